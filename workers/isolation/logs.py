"""A participant's log: its child's stdout and stderr lines, bounded, tailed live, stored whole.

Theory of operation. :class:`ParticipantLog` keeps the lines in memory up to a bound
(:data:`MAX_LINES` lines, :data:`MAX_BYTES` bytes); past it, lines are counted but dropped, and
one note says so (live at once, and at the end of the stored log with the final count).
Each kept line is also queued for the job's capped log stream (``Keys.logs(job)``, ``XADD …
MAXLEN ~``); :meth:`ParticipantLog.tail` is the task that sends what is queued in one round
trip per wake-up (at most every :data:`TAIL_INTERVAL_S`). The live tail is best effort: when
Redis is away its lines are dropped (the stored log keeps them) and the loss is logged once.
When the participant ends, :meth:`ParticipantLog.finish` stores the whole log in the object
store under :func:`log_key` and puts an ``end`` entry on the stream, so ``orchestrator logs
--follow`` knows the participant ended and where its log is.

A stored line is ``<UTC time> <stream> <text>``; a stream entry carries the same as fields
``p`` (participant), ``r`` (run id), ``t``, ``s``, ``l``.
"""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime

import anyio
import redis.exceptions
from redis.asyncio import Redis
from structlog.typing import FilteringBoundLogger

from orchestrator.bus.keys import Keys
from orchestrator.errors import BusUnavailableError, StorageError
from orchestrator.storage import ObjectStore
from orchestrator.storage.retry import StorageRetryPolicy

MAX_LINES = 10_000
"""Lines kept per participant run (the rest are counted, not kept)."""
MAX_BYTES = 5 * 1024 * 1024
"""Bytes of text kept per participant run."""
MAX_LINE_CHARS = 16 * 1024
"""A longer line is cut (with an ellipsis)."""
STREAM_MAXLEN = 10_000
"""Approximate cap of one job's log stream."""
STREAM_TTL_S = 7 * 24 * 3600
"""A job's log stream expires this long after its last line."""
TAIL_INTERVAL_S = 0.2
"""The live tail sends at most this often (everything queued in one round trip)."""
TAIL_TIMEOUT_S = 5.0
"""The longest one send of the live tail may take (then its lines are dropped)."""
STORE_TIMEOUT_S = 10.0
"""How long storing the whole log may hold up the participant's end."""

_REDIS_ERRORS = (redis.exceptions.RedisError, BusUnavailableError, OSError)


def log_key(job_id: str, participant: str) -> str:
    """Where a participant's whole log is stored (next to the job's checkpoints)."""
    return f"jobs/{job_id}/logs/{participant}.log"


def truncation_note(max_lines: int, max_bytes: int, dropped: int | None) -> str:
    more = "" if dropped is None else f"; {dropped} more line(s) dropped"
    return (f"[log truncated: the bound of {max_lines} lines / {max_bytes // (1024 * 1024)} MB "
            f"per participant was reached{more}]")


class ParticipantLog:
    """The captured output of one participant run."""

    def __init__(self, redis: Redis, keys: Keys, *, job_id: str, participant: str, run_id: str,
                 log: FilteringBoundLogger, max_lines: int = MAX_LINES,
                 max_bytes: int = MAX_BYTES) -> None:
        self._redis = redis
        self._stream = keys.logs(job_id)
        self.job_id, self.participant, self.run_id = job_id, participant, run_id
        self._log = log
        self.max_lines, self.max_bytes = max_lines, max_bytes
        self.lines: list[str] = []
        self._bytes = 0
        self.dropped = 0
        self._queue: deque[dict[str, str]] = deque()
        self._wakeup = anyio.Event()
        self._tail_failed = False

    @property
    def truncated(self) -> bool:
        return self.dropped > 0

    def add(self, stream: str, text: str) -> None:
        """One line the participant wrote on ``stream`` (``stdout``/``stderr``)."""
        text = text.rstrip("\r\n")
        if len(text) > MAX_LINE_CHARS:
            text = text[: MAX_LINE_CHARS - 1] + "…"
        if self.dropped or len(self.lines) >= self.max_lines \
                or self._bytes + len(text) > self.max_bytes:
            if not self.dropped:
                self._queue_line("note", truncation_note(self.max_lines, self.max_bytes, None))
            self.dropped += 1
            return
        at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        self.lines.append(f"{at} {stream} {text}")
        self._bytes += len(text) + 1
        self._queue.append({"p": self.participant, "r": self.run_id, "t": at, "s": stream,
                            "l": text})
        self._wakeup.set()

    def _queue_line(self, stream: str, text: str) -> None:
        at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        self._queue.append({"p": self.participant, "r": self.run_id, "t": at, "s": stream,
                            "l": text})
        self._wakeup.set()

    def text(self) -> str:
        """The whole log as stored (with the truncation note and count, if it was cut)."""
        lines = list(self.lines)
        if self.dropped:
            at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            note = truncation_note(self.max_lines, self.max_bytes, self.dropped)
            lines.append(f"{at} note {note}")
        return "".join(line + "\n" for line in lines)

    # --- live tail --------------------------------------------------------------------------

    async def tail(self) -> None:
        """Send queued lines to the job's log stream until cancelled (then :meth:`flush`)."""
        while True:
            await self._wakeup.wait()
            self._wakeup = anyio.Event()
            await self.flush()
            await anyio.sleep(TAIL_INTERVAL_S)

    async def flush(self) -> None:
        """Send every queued line now (best effort)."""
        if not self._queue:
            return
        entries = list(self._queue)
        self._queue.clear()
        try:
            with anyio.fail_after(TAIL_TIMEOUT_S):  # (the client has no reply timeout)
                async with self._redis.pipeline(transaction=False) as pipe:
                    for fields in entries:
                        pipe.xadd(self._stream, fields,  # type: ignore[arg-type]
                                  maxlen=STREAM_MAXLEN, approximate=True)
                    pipe.expire(self._stream, STREAM_TTL_S)
                    await pipe.execute()
        except (*_REDIS_ERRORS, TimeoutError) as exc:
            if not self._tail_failed:
                self._tail_failed = True
                self._log.warning("cannot tail the participant's log; the stored log keeps it",
                                  error=f"{type(exc).__name__}: {exc}")

    # --- the end ----------------------------------------------------------------------------

    async def finish(self, store: ObjectStore, retry: StorageRetryPolicy, outcome: str) -> None:
        """Store the whole log (when it has lines) and mark the end on the stream."""
        stored: str | None = None
        if self.lines or self.dropped:
            data = self.text().encode()
            key = stored = log_key(self.job_id, self.participant)
            meta = {"job-id": self.job_id, "participant": self.participant,
                    "run-id": self.run_id}
            with anyio.move_on_after(STORE_TIMEOUT_S):
                try:
                    await retry.run(lambda: store.create(key, data, meta, overwrite=True),
                                    op="store the log", key=key, log=self._log)
                except StorageError as exc:
                    self._log.warning("cannot store the participant's log", key=key,
                                      error=str(exc))
                    stored = None
        self._queue.append({"p": self.participant, "r": self.run_id, "end": outcome,
                            "key": stored or ""})
        await self.flush()
