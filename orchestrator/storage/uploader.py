"""The background checkpoint uploader.

Theory of operation: :class:`CheckpointUploader` owns an anyio task group. ``submit()`` reserves
the object's size from a byte budget (waiting while the budget is spent, so a fast trainer cannot
pile up unbounded memory), then starts one task per upload; a capacity limiter lets at most
``concurrency`` of them talk to the store at once. Each upload retries transient failures with
the object store's one :class:`~orchestrator.storage.retry.StorageRetryPolicy` (a time budget,
60 s by default, with capped, fully jittered backoff; past it the error is a
:class:`~orchestrator.storage.retry.StorageOutageError`). Its outcome is
delivered exactly once — to the returned :class:`UploadHandle`, to the per-upload and the
uploader-wide ``on_done`` callbacks — and only after the store confirmed the write (or gave up).
``drain()`` waits until nothing is pending; a participant publishes ``finished`` after it.

Uploads are idempotent: a key that already holds the same sha256 counts as uploaded (a retry
after a lost response), a key holding different bytes is a permanent ObjectExistsError unless
``overwrite=True``.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import anyio
from anyio.abc import TaskGroup
from structlog.typing import FilteringBoundLogger

from orchestrator.errors import IntegrityError, ObjectExistsError, StorageError
from orchestrator.storage.hashing import sha256_hex_async
from orchestrator.storage.port import ObjectInfo, ObjectStore
from orchestrator.storage.retry import DEFAULT_RETRY_BUDGET_S, RetryStats, StorageRetryPolicy
from orchestrator.storage.taskgroups import leaf_error


@dataclass(frozen=True)
class UploadOutcome:
    """How one upload ended: ``info`` on success, ``error`` after the final failure."""

    key: str
    attempts: int
    info: ObjectInfo | None = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        """True when the object is durably stored."""
        return self.info is not None


OnDone = Callable[[UploadOutcome], Awaitable[None] | None]


@dataclass(eq=False)
class UploadHandle:
    """Awaitable result of one submitted upload."""

    key: str
    size: int
    _done: anyio.Event = field(default_factory=anyio.Event, repr=False)
    _outcome: UploadOutcome | None = field(default=None, repr=False)

    @property
    def done(self) -> bool:
        """Whether the upload succeeded or finally failed."""
        return self._done.is_set()

    @property
    def outcome(self) -> UploadOutcome | None:
        """The outcome once :attr:`done`."""
        return self._outcome

    async def wait(self) -> ObjectInfo:
        """Wait for the upload; return the stored object's info or raise its final error."""
        await self._done.wait()
        assert self._outcome is not None
        if self._outcome.info is None:
            assert self._outcome.error is not None
            raise self._outcome.error
        return self._outcome.info

    def __await__(self) -> Generator[Any, None, ObjectInfo]:
        return self.wait().__await__()


@dataclass
class _Job:
    handle: UploadHandle
    data: bytes
    meta: dict[str, str]
    on_done: OnDone | None


class CheckpointUploader:
    """Background uploads with bounded concurrency, bounded memory and retries.

    Use as ``async with CheckpointUploader(store) as up: handle = await up.submit(key, data)``.
    Leaving the block normally drains (and raises if an undrained upload failed); leaving it
    with an exception cancels pending uploads.
    """

    def __init__(
        self,
        store: ObjectStore,
        *,
        concurrency: int = 4,
        max_buffered_bytes: int = 256 * 1024 * 1024,
        retry: StorageRetryPolicy | None = None,
        max_attempts: int | None = None,
        deadline_s: float | None = DEFAULT_RETRY_BUDGET_S,
        attempt_timeout_s: float | None = None,
        backoff_base_s: float = 0.2,
        backoff_max_s: float = 4.0,
        overwrite: bool = False,
        on_done: OnDone | None = None,
        log: FilteringBoundLogger | None = None,
    ) -> None:
        """``retry`` is the policy; without it one is built from ``deadline_s`` (the budget),
        ``max_attempts``, ``attempt_timeout_s`` and the backoff bounds."""
        if concurrency < 1 or (max_attempts is not None and max_attempts < 1) or (
            max_buffered_bytes < 1
        ):
            raise StorageError("concurrency, max_attempts and max_buffered_bytes must be >= 1")
        if retry is None:
            try:
                retry = StorageRetryPolicy(
                    budget_s=deadline_s, base_s=backoff_base_s, cap_s=backoff_max_s,
                    max_attempts=max_attempts, attempt_timeout_s=attempt_timeout_s,
                )  # fmt: skip
            except ValueError as exc:
                raise StorageError(f"invalid upload retry settings: {exc}") from exc
        self.store = store
        self.concurrency = concurrency
        self.max_buffered_bytes = max_buffered_bytes
        self.retry = retry
        self.overwrite = overwrite
        self._log = log
        self._on_done = on_done
        self._limiter = anyio.CapacityLimiter(concurrency)
        self._tg: TaskGroup | None = None
        self._queued_bytes = 0
        self._pending = 0
        self._waiters: list[anyio.Event] = []
        self._undrained: list[UploadOutcome] = []

    @property
    def queued_bytes(self) -> int:
        """Bytes submitted whose upload has not finished yet."""
        return self._queued_bytes

    @property
    def pending(self) -> int:
        """Uploads submitted and not finished."""
        return self._pending

    async def __aenter__(self) -> Self:
        if self._tg is not None:
            raise StorageError("CheckpointUploader is already running")
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._tg is not None
        tg, failure = self._tg, None
        try:
            if exc is None:
                await self.drain()
            else:
                tg.cancel_scope.cancel()
        except BaseException as error:
            failure = error
            tg.cancel_scope.cancel()
        try:
            await tg.__aexit__(None if failure is None else type(failure), failure, None)
        except BaseExceptionGroup as group:
            raise leaf_error(group) from None
        finally:
            self._tg = None
        if failure is not None:
            raise failure

    async def submit(
        self,
        key: str,
        data: bytes,
        meta: Mapping[str, str] | None = None,
        *,
        on_done: OnDone | None = None,
    ) -> UploadHandle:
        """Queue an upload; waits while the byte budget is spent. Returns at once otherwise.

        One object larger than the whole budget is accepted when nothing else is queued.
        """
        if self._tg is None:
            raise StorageError("CheckpointUploader is not running (use 'async with')")
        data = bytes(data)
        size = len(data)
        while self._queued_bytes > 0 and self._queued_bytes + size > self.max_buffered_bytes:
            await self._wait_change()
        handle = UploadHandle(key=key, size=size)
        job = _Job(handle, data, dict(meta or {}), on_done)
        self._queued_bytes += size
        self._pending += 1
        self._tg.start_soon(self._run, job, name=f"upload {key}")
        return handle

    async def drain(self, *, raise_on_failure: bool = True) -> list[UploadOutcome]:
        """Wait until every submitted upload finished; return the outcomes not drained before.

        With ``raise_on_failure``, a failed upload raises StorageError naming the failed keys.
        """
        while self._pending:
            await self._wait_change()
        outcomes, self._undrained = self._undrained, []
        failed = [o for o in outcomes if not o.ok]
        if failed and raise_on_failure:
            names = ", ".join(f"{o.key} ({o.error})" for o in failed[:5])
            raise StorageError(f"{len(failed)} checkpoint upload(s) failed: {names}") from (
                failed[0].error
            )
        return outcomes

    async def _wait_change(self) -> None:
        event = anyio.Event()
        self._waiters.append(event)
        await event.wait()

    def _notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for event in waiters:
            event.set()

    async def _run(self, job: _Job) -> None:
        handle = job.handle
        outcome = UploadOutcome(
            key=handle.key, attempts=0, error=StorageError(f"upload of {handle.key} cancelled")
        )
        try:
            try:
                async with self._limiter:
                    outcome = await self._attempt_all(job)
            finally:
                self._queued_bytes -= handle.size
                job.data = b""
                handle._outcome = outcome
                handle._done.set()
                self._notify()
            for callback in (job.on_done, self._on_done):
                if callback is not None:
                    result = callback(outcome)
                    if inspect.isawaitable(result):
                        await result
        finally:
            self._undrained.append(outcome)
            self._pending -= 1
            self._notify()

    async def _attempt_all(self, job: _Job) -> UploadOutcome:
        key = job.handle.key
        stats = RetryStats()
        try:
            info = await self.retry.run(
                lambda: self._attempt_once(job), op="upload", key=key, log=self._log, stats=stats
            )
        except Exception as exc:
            return UploadOutcome(key=key, attempts=stats.attempts, error=exc)
        return UploadOutcome(key=key, attempts=stats.attempts, info=info)

    async def _attempt_once(self, job: _Job) -> ObjectInfo:
        key = job.handle.key
        try:
            return await self.store.create(key, job.data, job.meta, overwrite=self.overwrite)
        except ObjectExistsError:
            sha256 = await sha256_hex_async(job.data)
            try:
                existing = await self.store.get_meta(key)
            except IntegrityError:
                # Present without its sha256 (a store that lost its metadata, e.g. rclone
                # restarted after the write landed): rewrite it only if the bytes are ours.
                try:
                    await self.store.get_data(key, sha256=sha256)
                except IntegrityError:
                    raise ObjectExistsError(
                        f"object {key!r} already exists with other bytes in {self.store.url}"
                    ) from None
                return await self.store.create(key, job.data, job.meta, overwrite=True)
            if existing.sha256 == sha256:
                return existing  # an earlier attempt landed; its response was lost
            raise
