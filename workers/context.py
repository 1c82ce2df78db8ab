"""The real :class:`~workers.sdk.WorkloadContext`: events through the outbox, bytes through the
object store, peer messages through the job's Redis mailbox streams.

Theory of operation:

* Metrics and round announcements become events, stamped and queued by
  :class:`~workers.outbox.ParticipantEvents`; they never wait on Redis.
* ``save_checkpoint`` returns the deterministic key at once and hands the bytes to the
  participant's :class:`~workers.uploads.ParticipantUploads`. ``checkpoint.saved`` is queued by
  the upload's completion callback, i.e. only once the object is durable; a final failure calls
  ``on_checkpoint_failed`` (the participant then fails with ``checkpoint_failed``, or
  ``storage_unavailable`` when the store stayed unreachable for the whole retry budget).
  ``parent`` is the key this participant saved before.
* ``load_checkpoint`` verifies the bytes against the sha256 the caller gives (e.g. the
  manifest's) or, for a checkpoint this run saved, the one its upload recorded; only for other
  keys against the store's own metadata. So a store that lost its metadata still loads.
* ``load_checkpoint``, ``put_blob`` and ``get_blob`` retry transient object-store failures with
  the worker's :class:`~orchestrator.storage.retry.StorageRetryPolicy` (the uploads use the same
  one), so a workload rides out an outage of up to the budget (60 s by default) without code
  of its own; only awaiting coroutines sleep, so heartbeats and the outbox carry on. Past the
  budget they raise :class:`~orchestrator.storage.retry.StorageOutageError`. A blob's key
  carries its sha256, and ``get_blob`` verifies against it.
* ``send`` and ``receive`` go through the participant's :class:`~workers.mailbox.Mailbox`
  (the job's Redis mailbox streams, authenticated with the job's mailbox key).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
from redis.asyncio import Redis
from structlog.typing import FilteringBoundLogger

from orchestrator.bus.keys import Keys
from orchestrator.core.commands import StartParticipant
from orchestrator.core.events import CheckpointSaved, RoundMetrics, RoundStarted
from orchestrator.core.status import Role
from orchestrator.storage import ObjectStore, UploadOutcome
from orchestrator.storage.hashing import sha256_hex_async
from orchestrator.storage.retry import StorageRetryPolicy
from workers.mailbox import Mailbox
from workers.outbox import ParticipantEvents
from workers.sdk import (
    ContextBase,
    Identity,
    PeerMessage,
    blob_sha256,
    check_recipient,
    check_round,
    encode_message_body,
    validate_metrics,
)
from workers.uploads import ParticipantUploads

T = TypeVar("T")

RECEIVE_SLICE_MS = 1000
"""Longest single XREAD BLOCK (below the client's socket timeout)."""

OnCheckpointFailed = Callable[[str, BaseException | None], None]
"""Called with the failure message and the upload's final error."""


class RedisWorkloadContext(ContextBase):
    """One participant's view of its job, as run by a worker agent."""

    def __init__(
        self,
        command: StartParticipant,
        *,
        redis: Redis,
        keys: Keys,
        store: ObjectStore,
        uploads: ParticipantUploads,
        events: ParticipantEvents,
        log: FilteringBoundLogger,
        on_checkpoint_failed: OnCheckpointFailed,
        backoff_max_s: float = 2.0,
        storage_retry: StorageRetryPolicy | None = None,
    ) -> None:
        super().__init__(
            Identity(
                job_id=command.job_id,
                participant=command.participant,
                role=command.role,
                run_id=command.run_id,
                config=MappingProxyType(dict(command.config)),
                data_path=command.data_path,
                model=command.model,
                rounds=command.rounds,
                peers=tuple(command.peers),
                client_index=command.client_index,
                client_count=command.client_count,
                min_clients=command.min_clients,
            ),
            log,
        )
        self._store = store
        self._uploads = uploads
        self._events = events
        self._on_checkpoint_failed = on_checkpoint_failed
        self._storage_retry = storage_retry or StorageRetryPolicy()
        self._mail = Mailbox(redis, keys, command.job_id, command.participant,
                             mailbox_key=command.mailbox_key, log=log,
                             backoff_max_s=backoff_max_s)
        self._buffer: deque[PeerMessage] = deque()
        self._last_checkpoint: tuple[str, str | None] | None = None  # (key, its parent)
        #: The sha256 of each checkpoint this run saved (as its upload recorded it, i.e. the
        #: manifest's): ``load_checkpoint`` verifies against it, not the store's metadata.
        self._saved_sha256: dict[str, str] = {}
        self._receive_scope: anyio.CancelScope | None = None
        self.current_round: int | None = None
        """The latest round this participant is known to work on (carried by heartbeats)."""
        self.stop_listeners: list[Callable[[], None]] = []
        """Called on :meth:`request_stop` (an isolated run forwards the stop to its child)."""
        self.gone_listeners: list[Callable[[list[str], str], None]] = []
        """Called with the newly gone clients and the reason on :meth:`note_gone`."""

    # --- reporting --------------------------------------------------------------------------

    async def report_metrics(self, round: int, metrics: Mapping[str, float]) -> None:
        check_round(round, minimum=0)
        clean = validate_metrics(metrics)
        self._advance_round(round)
        self._events.emit(RoundMetrics, round=round, metrics=clean)
        await anyio.lowlevel.checkpoint()

    async def round_started(self, round: int) -> None:
        check_round(round, minimum=1)
        if self.role is Role.SERVER:
            self._advance_round(round)
            self._events.emit(RoundStarted, round=round)
        await anyio.lowlevel.checkpoint()

    def _advance_round(self, round: int) -> None:
        if self.current_round is None or round > self.current_round:
            self.current_round = round

    # --- checkpoints and blobs --------------------------------------------------------------

    async def save_checkpoint(
        self, round: int, data: bytes, *, final: bool = False, ext: str = "npz"
    ) -> str:
        key = self._checkpoint_key(round, data, ext)
        if self._last_checkpoint is None:
            parent = None
        elif self._last_checkpoint[0] == key:  # e.g. the final model saved under the last round
            parent = self._last_checkpoint[1]
        else:
            parent = self._last_checkpoint[0]
        self._last_checkpoint = (key, parent)

        def uploaded(outcome: UploadOutcome) -> None:
            self._checkpoint_done(outcome, round=round, parent=parent, final=final)

        meta = {"job-id": self.job_id, "participant": self.participant, "round": str(round)}
        await self._uploads.submit(key, bytes(data), meta, on_done=uploaded)
        return key

    def _checkpoint_done(
        self, outcome: UploadOutcome, *, round: int, parent: str | None, final: bool
    ) -> None:
        if outcome.info is not None:
            info = outcome.info
            self._saved_sha256[outcome.key] = info.sha256
            self._events.emit(
                CheckpointSaved,
                round=round,
                key=outcome.key,
                size=info.size,
                sha256=info.sha256,
                parent=parent,
                final=final,
            )
            self._log.debug("checkpoint saved", key=outcome.key, size=info.size)
            return
        message = (
            f"checkpoint {outcome.key} could not be stored after {outcome.attempts} "
            f"attempt(s): {outcome.error}"
        )
        self._log.warning("checkpoint upload failed", key=outcome.key, error=str(outcome.error))
        self._on_checkpoint_failed(message, outcome.error)

    async def load_checkpoint(self, key: str, *, sha256: str | None = None) -> bytes:
        expected = sha256 if sha256 is not None else self._saved_sha256.get(key)
        return await self._with_retries(
            "load_checkpoint", key, lambda: self._store.get_data(key, sha256=expected)
        )

    async def put_blob(self, name: str, data: bytes) -> str:
        data = bytes(data)
        key = self._blob_key(name, await sha256_hex_async(data))
        await self._with_retries(
            "put_blob", key, lambda: self._store.create(key, data, overwrite=True)
        )
        return key

    async def get_blob(self, key: str) -> bytes:
        sha256 = blob_sha256(key)
        return await self._with_retries(
            "get_blob", key, lambda: self._store.get_data(key, sha256=sha256)
        )

    async def _with_retries(self, op: str, key: str, call: Callable[[], Awaitable[T]]) -> T:
        return await self._storage_retry.run(call, op=op, key=key, log=self._log)

    # --- messages ---------------------------------------------------------------------------

    async def send(self, to: str, body: Mapping[str, Any]) -> None:
        check_recipient(self.participant, to, self.peers)
        await self._mail.send(to, encode_message_body(body))

    def _deliver(self, message: PeerMessage) -> None:
        self._buffer.append(message)  # (a waiting receive sees it at its next slice, <= 1 s)

    async def receive(self, *, timeout_s: float | None = None) -> PeerMessage:
        await self.checkpoint_cancel()
        deadline = None if timeout_s is None else anyio.current_time() + timeout_s
        with anyio.CancelScope() as scope:
            self._receive_scope = scope
            try:
                expired = False
                while not self._buffer:
                    if expired:
                        msg = f"no message for {self.participant} within {timeout_s:g}s"
                        raise TimeoutError(msg)
                    block_ms: int | None = RECEIVE_SLICE_MS
                    if deadline is not None:
                        left_ms = int((deadline - anyio.current_time()) * 1000)
                        if left_ms <= 0:  # one last look without blocking (BLOCK 0 = forever)
                            expired, block_ms = True, None
                        else:
                            block_ms = min(RECEIVE_SLICE_MS, left_ms)
                    await self._read_mailbox(block_ms)
            finally:
                self._receive_scope = None
        if scope.cancelled_caught or self._stop_requested:
            await self.checkpoint_cancel()
        message = self._buffer.popleft()
        round_ = message.body.get("round")
        if isinstance(round_, int) and not isinstance(round_, bool) and round_ >= 0:
            self._advance_round(round_)
        return message

    async def _read_mailbox(self, block_ms: int | None) -> None:
        """Read this participant's mailbox into the buffer; ``block_ms=None`` does not block."""
        self._buffer.extend(await self._mail.read(block_ms))

    # --- cancellation -----------------------------------------------------------------------

    def request_stop(self) -> None:
        """Ask the workload to stop: ``checkpoint_cancel`` and ``receive`` raise from now on."""
        self._stop_requested = True
        if self._receive_scope is not None:
            self._receive_scope.cancel()
        for listener in list(self.stop_listeners):
            listener()

    def note_gone(self, gone: Sequence[str], reason: str) -> None:
        new = sorted(frozenset(gone) - self.gone_peers)
        super().note_gone(gone, reason)
        if new:
            for listener in list(self.gone_listeners):
                listener(new, reason)

