"""A blocking wrapper of :class:`Client` for scripts and notebooks.

The async client runs on an event loop of its own, in a daemon thread (an anyio blocking
portal);
each method hands its call to that loop and blocks until it returns. So it works where a loop
is already running in the calling thread — a Jupyter notebook — and where none is; the
connections live on the portal's loop and are only ever used there.

::

    with SyncClient() as client:
        handle = client.submit({"workload": "noop", "server": {"worker": "srv"}})
        print(handle.wait(timeout_s=60).status)
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import anyio
from anyio.from_thread import BlockingPortal

from orchestrator.client.client import Client
from orchestrator.client.handle import JobHandle
from orchestrator.client.logs import LogLine
from orchestrator.client.records import CancelResult, Change, JobPage, WorkerInfo
from orchestrator.client.specs import SpecSource
from orchestrator.client.why import Explanation
from orchestrator.core import Job, JobStatus
from orchestrator.settings import Settings
from orchestrator.store.port import Rejection

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class SyncJobHandle:
    """The blocking twin of :class:`JobHandle`."""

    client: SyncClient = field(repr=False)
    handle: JobHandle = field(repr=False)

    @property
    def id(self) -> str:
        return self.handle.id

    @property
    def entry_id(self) -> str:
        return self.handle.entry_id

    @property
    def warnings(self) -> list[str]:
        return self.handle.warnings

    def status(self) -> Job:
        return self.client.call(self.handle.status)

    def wait(self, timeout_s: float | None = None) -> Job:
        return self.client.call(self.handle.wait, timeout_s)

    def watch(self) -> Iterator[Change]:
        return self.client.iterate(self.handle.watch)

    def cancel(self, reason: str = "cancelled by user") -> CancelResult:
        return self.client.call(self.handle.cancel, reason)


class SyncClient:
    """:class:`Client` with blocking methods (same names, same arguments, same errors)."""

    def __init__(self, settings: Settings | None = None, **overrides: Any) -> None:
        self.client = Client(settings, **overrides)
        self._portal, self._thread = _start_portal()
        self._closed = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections and stop the client's loop thread."""
        if self._closed:
            return
        self._closed = True
        try:
            self._portal.call(self.client.aclose)
        finally:
            self._portal.call(self._portal.stop)
            self._thread.join(timeout=CLOSE_JOIN_S)

    @property
    def settings(self) -> Settings:
        return self.client.settings

    def call(self, func: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``func(*args)`` on the client's loop and return its result."""
        return self._portal.call(func, *args)

    def iterate(self, factory: Callable[[], AsyncIterator[T]]) -> Iterator[T]:
        """A blocking iterator over the async iterator ``factory()`` makes on the loop."""
        iterator = self._portal.call(_make, factory)
        try:
            while True:
                try:
                    item = self._portal.call(_next, iterator)
                except StopAsyncIteration:
                    return
                yield item
        finally:
            closer = getattr(iterator, "aclose", None)
            if closer is not None and not self._closed:
                self._portal.call(closer)

    # --- the client's methods --------------------------------------------------------------
    def submit(self, spec: SpecSource | Path, *, idempotency_key: str | None = None,
               check_workers: bool = True) -> SyncJobHandle:
        handle = self._portal.call(lambda: self.client.submit(
            spec, idempotency_key=idempotency_key, check_workers=check_workers))
        return SyncJobHandle(self, handle)

    def get(self, job_id: str) -> Job:
        return self.call(self.client.get, job_id)

    def list(self, *, status: JobStatus | str | None = None, workload: str | None = None,
             labels: Mapping[str, str] | None = None, created_after: datetime | None = None,
             created_before: datetime | None = None, limit: int = 20, skip: int = 0,
             cursor: str | None = None) -> JobPage:
        return self._portal.call(lambda: self.client.list(
            status=status, workload=workload, labels=labels, created_after=created_after,
            created_before=created_before, limit=limit, skip=skip, cursor=cursor))

    def watch(self, job_id: str | None = None, *, limit: int = 20) -> Iterator[Change]:
        return self.iterate(lambda: self.client.watch(job_id, limit=limit))

    def wait(self, job_id: str, *, timeout_s: float | None = None) -> Job:
        return self._portal.call(lambda: self.client.wait(job_id, timeout_s=timeout_s))

    def cancel(self, job_id: str, *, reason: str = "cancelled by user") -> CancelResult:
        return self._portal.call(lambda: self.client.cancel(job_id, reason=reason))

    def checkpoints(self, job_id: str, *, final_only: bool = False,
                    round_: int | None = None) -> Sequence[dict[str, Any]]:
        return self._portal.call(lambda: self.client.checkpoints(
            job_id, final_only=final_only, round_=round_))

    def download(self, job_id: str, directory: Path | str, *, final_only: bool = False,
                 round_: int | None = None) -> Sequence[Path]:
        return self._portal.call(lambda: self.client.download(
            job_id, directory, final_only=final_only, round_=round_))

    def logs(self, job_id: str, participant: str | None = None) -> Sequence[LogLine]:
        return self.call(self.client.logs, job_id, participant)

    def rejections(self, *, since: datetime | None = None, limit: int = 100,
                   job_id: str | None = None) -> Sequence[Rejection]:
        return self._portal.call(lambda: self.client.rejections(
            since=since, limit=limit, job_id=job_id))

    def workers(self) -> Sequence[WorkerInfo]:
        return self.call(self.client.workers)

    def why(self, job_id: str) -> Explanation:
        return self.call(self.client.why, job_id)


CLOSE_JOIN_S = 5.0
"""How long ``close`` waits for the client's loop thread to end."""


def _start_portal() -> tuple[BlockingPortal, threading.Thread]:
    """A portal on a new event loop in a daemon thread. (anyio's ``start_blocking_portal``
    runs it in an executor thread, which the interpreter joins at exit: a script that forgot
    ``close()`` would never end. A daemon thread does not hold up the exit.)"""
    started: Future[BlockingPortal] = Future()

    async def serve() -> None:
        async with BlockingPortal() as portal:
            started.set_result(portal)
            await portal.sleep_until_stopped()

    def run() -> None:
        try:
            anyio.run(serve)
        except BaseException as exc:  # the loop could not start: tell the constructor
            if not started.done():
                started.set_exception(exc)
            raise

    thread = threading.Thread(target=run, name="orchestrator-client", daemon=True)
    thread.start()
    return started.result(), thread


async def _make(factory: Callable[[], AsyncIterator[T]]) -> AsyncIterator[T]:
    return factory()


async def _next(iterator: AsyncIterator[T]) -> T:
    return await iterator.__anext__()
