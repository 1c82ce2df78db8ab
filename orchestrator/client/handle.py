"""What :meth:`Client.submit` returns: the job's id, its submission entry, and shortcuts to
follow it. The handle remembers the submission, so :meth:`JobHandle.wait` reports the
daemon's refusal of *this* submission (``JobRejectedError``: ``duplicate_job`` for a reused id
or idempotency key whose spec differs) rather than the state of an older job of that id."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

from orchestrator.client.records import CancelResult, Change
from orchestrator.core import Job, JobSpec


class JobOwner(Protocol):
    """What a handle asks of its client (``Client`` is one)."""

    async def get(self, job_id: str) -> Job: ...

    async def wait(self, job_id: str, *, timeout_s: float | None = None,
                   entry_id: str | None = None, spec: JobSpec | None = None) -> Job: ...

    def watch(self, job_id: str | None = None, *, limit: int = 20) -> AsyncIterator[Change]: ...

    async def cancel(self, job_id: str, *, reason: str = "cancelled by user",
                     requested_by_: str | None = None) -> CancelResult: ...


@dataclass(frozen=True, slots=True)
class JobHandle:
    """A submitted job: ``id``, the submissions-stream ``entry_id``, the ``spec`` as sent and
    the ``warnings`` about its workers at submission time."""

    client: JobOwner = field(repr=False)
    id: str
    entry_id: str
    spec: JobSpec = field(repr=False)
    warnings: list[str] = field(default_factory=list)

    async def status(self) -> Job:
        """The job as stored now (``JobNotFoundError`` until the daemon created it)."""
        return await self.client.get(self.id)

    async def wait(self, timeout_s: float | None = None) -> Job:
        """The job once FINISHED_*; ``JobRejectedError`` if the daemon refused this
        submission; ``WaitTimeoutError`` after ``timeout_s``."""
        return await self.client.wait(self.id, timeout_s=timeout_s, entry_id=self.entry_id,
                                      spec=self.spec)

    def watch(self) -> AsyncIterator[Change]:
        """Each committed change of the job until it is FINISHED_*."""
        return self.client.watch(self.id)

    async def cancel(self, reason: str = "cancelled by user") -> CancelResult:
        return await self.client.cancel(self.id, reason=reason)
