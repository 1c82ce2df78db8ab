"""One participant's checkpoint uploads, with an uploader only once it saves a checkpoint.

Theory of operation: a :class:`~orchestrator.storage.CheckpointUploader` owns a task group, so
it must live in a task of its own for as long as its uploads run. :class:`ParticipantUploads`
costs nothing until the participant's first ``submit``: that starts one *host* task in the
task group it was given (the agent's participants group), which enters the uploader and sleeps
until :meth:`ParticipantUploads.close` cancels it. Uploads are submitted to and drained from the
participant's own task; their completion callbacks run in the uploader's tasks. A participant
that never saves (``noop``, every client of ``fedavg``) starts no task and no uploader, and its
``drain`` returns at once. Every outcome is counted in the process's :data:`UPLOADS` (read by
the worker's ``/metrics``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import anyio
from anyio.abc import TaskGroup, TaskStatus
from structlog.typing import FilteringBoundLogger

from orchestrator.health.counters import UploadCounters
from orchestrator.storage import CheckpointUploader, UploadHandle, UploadOutcome

UploaderFactory = Callable[[], CheckpointUploader]
OnUploaded = Callable[[UploadOutcome], None]

UPLOADS = UploadCounters()
"""This process's checkpoint uploads: outcomes, bytes, latency (plain ints)."""


class ParticipantUploads:
    """The checkpoint uploads of one participant run."""

    def __init__(
        self,
        host: TaskGroup,
        new_uploader: UploaderFactory,
        *,
        name: str,
        log: FilteringBoundLogger,
    ) -> None:
        self._host = host
        self._new_uploader = new_uploader
        self._name = name
        self._log = log
        self._uploader: CheckpointUploader | None = None
        self._scope: anyio.CancelScope | None = None  # the host task's, once it runs
        self._closed = False

    @property
    def started(self) -> bool:
        """Whether an uploader was started (the participant saved a checkpoint)."""
        return self._uploader is not None

    @property
    def pending(self) -> int:
        """Uploads submitted and not finished."""
        return self._uploader.pending if self._uploader is not None else 0

    async def submit(
        self, key: str, data: bytes, meta: Mapping[str, str], *, on_done: OnUploaded
    ) -> UploadHandle:
        """Queue an upload (see ``CheckpointUploader.submit``); starts the uploader first."""
        if self._closed:
            raise RuntimeError(f"the uploads of {self._name} are closed")
        if self._uploader is None:
            uploader = self._new_uploader()
            self._scope = anyio.CancelScope()
            with anyio.CancelScope(shield=True):  # the host enters it at once
                await self._host.start(self._run_host, uploader, self._scope,
                                       name=f"uploads {self._name}")
            self._uploader = uploader
        submitted, size = time.monotonic(), len(data)

        def counted(outcome: UploadOutcome) -> None:
            UPLOADS.note(ok=outcome.ok, size=size, seconds=time.monotonic() - submitted)
            on_done(outcome)

        return await self._uploader.submit(key, data, meta, on_done=counted)

    async def drain(self) -> None:
        """Wait until every upload submitted so far succeeded or finally failed.

        Failures are not raised: each upload's ``on_done`` has seen its outcome.
        """
        if self._uploader is not None:
            await self._uploader.drain(raise_on_failure=False)

    def close(self) -> None:
        """End the host task; uploads still running are abandoned (cancelled)."""
        self._closed = True
        if self._scope is not None:  # (nothing to end for a participant that never saved)
            self._scope.cancel()

    async def _run_host(
        self, uploader: CheckpointUploader, scope: anyio.CancelScope, *,
        task_status: TaskStatus[None]
    ) -> None:
        with scope:
            try:
                async with uploader:
                    task_status.started()
                    await anyio.sleep_forever()
            except Exception:  # an upload callback of ours raised: never end the agent for it
                self._log.exception("checkpoint uploader crashed")
