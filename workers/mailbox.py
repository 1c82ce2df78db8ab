"""A participant's peer messages on the job's Redis mailbox streams.

Theory of operation:

* ``send`` XADDs ``{sender, id, body}`` to the recipient's mailbox stream
  (``Keys.mailbox(job_id, to)``, capped and expiring); ``read`` XREADs this participant's own
  mailbox from the beginning (messages sent before it started are not lost), from where the
  last read stopped. Redis connection errors are retried with backoff; a resent message carries
  the same ``id`` and the receiver drops the duplicate.
* Messages are authenticated with the job's mailbox key from the start command
  (``orchestrator.core.auth.message_mac`` over job, recipient, sender, id and the body as
  sent): ``send`` adds a ``mac`` field, ``read`` drops (and logs, without the key) a message
  whose MAC is missing or wrong. Every participant of the job holds that key, so it proves a
  message comes from the job, not which participant wrote it. A start command without a
  mailbox key (no daemon sent it) sends and accepts unsigned messages.

The waiting (slices of a blocking read, a stop request, a timeout) is the context's
(:meth:`workers.context.RedisWorkloadContext.receive`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import redis.exceptions
from redis.asyncio import Redis
from structlog.typing import FilteringBoundLogger

from orchestrator.bus.keys import Keys
from orchestrator.bus.retry import Backoff
from orchestrator.core.auth import message_mac, verify_message
from orchestrator.errors import BusUnavailableError
from workers.sdk import PeerMessage

T = TypeVar("T")

MAILBOX_TTL_S = 7 * 24 * 3600
"""A job's mailbox streams expire this long after their last message."""
MAILBOX_MAXLEN = 10_000
"""Approximate cap of one mailbox stream."""
READ_COUNT = 32
"""Messages taken by one XREAD."""

_REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                 BusUnavailableError, OSError)


class Mailbox:
    """Sends to the job's other participants and reads this participant's own messages."""

    def __init__(self, redis: Redis, keys: Keys, job_id: str, participant: str, *,
                 mailbox_key: str | None, log: FilteringBoundLogger,
                 backoff_max_s: float = 2.0) -> None:
        self._redis = redis
        self._keys = keys
        self._job_id = job_id
        self._participant = participant
        self._stream = keys.mailbox(job_id, participant)
        self._mailbox_key = mailbox_key
        self._log = log
        self._backoff_max_s = backoff_max_s
        self._last_id = "0-0"
        self._seen: set[str] = set()

    async def send(self, to: str, body: Mapping[str, Any]) -> None:
        """Put ``body`` (JSON-ready, already checked) in ``to``'s mailbox."""
        raw = json.dumps(body, separators=(",", ":"))
        message_id = uuid.uuid4().hex
        fields: dict[str, str] = {"sender": self._participant, "id": message_id, "body": raw}
        if self._mailbox_key is not None:
            fields["mac"] = message_mac(self._mailbox_key, job_id=self._job_id, to=to,
                                        sender=self._participant, message_id=message_id,
                                        body=raw)
        mailbox = self._keys.mailbox(self._job_id, to)

        async def xadd() -> None:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.xadd(mailbox, fields, maxlen=MAILBOX_MAXLEN, approximate=True)  # type: ignore[arg-type]
                pipe.expire(mailbox, MAILBOX_TTL_S)
                await pipe.execute()

        await self._retry("send a message", xadd)

    async def read(self, block_ms: int | None) -> list[PeerMessage]:
        """The messages that arrived since the last read (waiting up to ``block_ms`` for one;
        ``None`` does not block), authentic and not seen before."""

        async def xread() -> Any:
            return await self._redis.xread({self._stream: self._last_id}, count=READ_COUNT,
                                           block=block_ms)

        reply = await self._retry("read messages", xread)
        messages: list[PeerMessage] = []
        for _stream, entries in reply or []:
            for entry_id, fields in entries:
                self._last_id = _text(entry_id)
                message = self._decode({_text(k): _text(v) for k, v in fields.items()})
                if message is not None:
                    messages.append(message)
        return messages

    def _decode(self, fields: dict[str, str]) -> PeerMessage | None:
        message_id = fields.get("id", "")
        if message_id and message_id in self._seen:
            return None  # a send retried after a lost reply
        if self._mailbox_key is not None and not verify_message(
                self._mailbox_key, fields.get("mac"), job_id=self._job_id,
                to=self._participant, sender=fields.get("sender", ""), message_id=message_id,
                body=fields.get("body", "")):
            self._log.warning("dropped a peer message without a valid MAC",
                              claimed_sender=fields.get("sender"), message_id=message_id[:64],
                              mac="missing" if not fields.get("mac") else "wrong")
            return None
        if message_id:
            self._seen.add(message_id)
        try:
            body = json.loads(fields["body"])
            sender = fields["sender"]
        except (KeyError, ValueError):
            self._log.warning("dropped a malformed peer message", fields=sorted(fields))
            return None
        if not isinstance(body, dict):
            self._log.warning("dropped a peer message whose body is not an object", sender=sender)
            return None
        return PeerMessage(sender=sender, body=body)

    async def _retry(self, what: str, op: Callable[[], Awaitable[T]]) -> T:
        backoff = Backoff(cap_s=self._backoff_max_s)
        while True:
            try:
                return await op()
            except _REDIS_ERRORS as exc:
                if backoff.attempts % 20 == 0:
                    self._log.warning(
                        f"cannot {what}; retrying",
                        error=f"{type(exc).__name__}: {exc}",
                        attempts=backoff.attempts + 1,
                    )
                await backoff.sleep()


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
