"""The async Python client, on the same servers and settings (``ORCHESTRATOR_*``) as the CLI:
submissions and cancels go on the bus, jobs, manifests and rejections come from MongoDB,
checkpoints and stored logs from the object store, each connected on first use. Failures are
``orchestrator.errors`` exceptions (``JobNotFoundError``, ``JobRejectedError``,
``SpecProblems``, ``StoreUnavailableError``/``BusUnavailableError``, ``IntegrityError``,
``WaitTimeoutError``). See docs/client.md.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import anyio

from orchestrator.client.connections import Connections
from orchestrator.client.downloads import download_verified
from orchestrator.client.following import changes, finished
from orchestrator.client.handle import JobHandle
from orchestrator.client.logs import (
    LogLine,
    StreamState,
    chosen_participants,
    follow_lines,
    participant_lines,
    read_state,
)
from orchestrator.client.lookups import (
    explanation,
    find_job,
    job_page,
    job_query,
    manifest_rows,
    newest_rejection,
)
from orchestrator.client.records import CancelResult, Change, JobPage, WorkerInfo
from orchestrator.client.specs import SpecSource, same_request
from orchestrator.client.submitting import prepared, requested_by, worker_advice
from orchestrator.client.updates import batches, position, recent
from orchestrator.client.why import Explanation
from orchestrator.core import Job, JobSpec, JobStatus
from orchestrator.errors import WaitTimeoutError
from orchestrator.settings import Settings, load_settings
from orchestrator.store.port import RefusedEvent, Rejection
from orchestrator.watch.follow import Follower, Frame, load_detail, utcnow
from orchestrator.watch.model import JobDetail


class Client:
    """An async client of one orchestrator deployment (one namespace, one database).

    Use it as an async context manager, or call :meth:`aclose` when done.
    """

    def __init__(self, settings: Settings | None = None, *,
                 connect_timeout_s: float | None = None, **overrides: Any) -> None:
        """``settings`` default to the environment's (``ORCHESTRATOR_*``); ``overrides``
        (``redis_url=…``, ``namespace=…``) are applied to either. ``connect_timeout_s``
        defaults to the settings' (``ORCHESTRATOR_CONNECT_TIMEOUT_S``, 3 s)."""
        if settings is None:
            self.settings = load_settings(**overrides)
        else:
            self.settings = settings.model_copy(update=overrides) if overrides else settings
        timeout_s = (self.settings.connect_timeout_s if connect_timeout_s is None
                     else connect_timeout_s)
        self.connections = Connections(self.settings, timeout_s=timeout_s)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.connections.aclose()

    # --- submitting ------------------------------------------------------------------------
    def prepare(self, spec: SpecSource | Path, *, idempotency_key: str | None = None,
                name: str | None = None) -> tuple[JobSpec, list[str]]:
        """The spec as it would be submitted (validated, its job id and key filled in) and
        its warnings; ``SpecProblems`` lists every problem. A ``Path``, or a string that is
        not a JSON object (``"examples/noop.json"``), names a file to read."""
        return prepared(spec, idempotency_key=idempotency_key, name=name)

    async def submit(self, spec: SpecSource | Path, *, idempotency_key: str | None = None,
                     check_workers: bool = True) -> JobHandle:
        """Validate ``spec`` locally (the daemon's checks) and put it on the submissions
        stream. ``check_workers`` adds warnings (``handle.warnings``) about the spec's workers
        that are not registered now or cannot run their participant."""
        ready, warnings = self.prepare(spec, idempotency_key=idempotency_key)
        bus = await self.connections.bus()
        if check_workers:
            warnings += await worker_advice(bus, ready)
        wire = ready.model_dump_json(exclude_none=True)
        entry_id = await bus.submit(wire, idempotency_key=ready.idempotency_key)
        assert ready.job_id is not None  # (named() always names it)
        return JobHandle(self, ready.job_id, entry_id, JobSpec.model_validate_json(wire),
                         warnings)

    # --- reading jobs ----------------------------------------------------------------------
    async def get(self, job_id: str) -> Job:
        """The job as stored; ``JobNotFoundError`` (with the rejection, when the daemon
        refused a submission of that id)."""
        return await find_job(await self.connections.store(), job_id)

    async def detail(self, job_id: str) -> JobDetail:
        """The job with its metric rows and manifest, as ``orchestrator status`` shows it."""
        store = await self.connections.store()
        return await load_detail(store, await self.get(job_id), utcnow())

    async def list(self, *, status: JobStatus | str | None = None, workload: str | None = None,
                   labels: Mapping[str, str] | None = None,
                   created_after: datetime | None = None,
                   created_before: datetime | None = None, limit: int = 20, skip: int = 0,
                   cursor: str | None = None) -> JobPage:
        """Jobs newest first, filtered (all filters combine). Page with ``cursor`` (the
        previous page's ``next_cursor``: stable while jobs arrive) or ``skip``/``limit``."""
        query = job_query(status=status, workload=workload, labels=labels,
                          created_after=created_after, created_before=created_before,
                          limit=limit, cursor=cursor)
        store = await self.connections.store()
        return job_page(await store.find_jobs(query, limit=limit + 1, skip=skip), limit)

    async def rejection(self, job_id: str, entry_id: str | None = None) -> Rejection | None:
        """The daemon's newest rejection naming ``job_id`` (of the submission ``entry_id``
        when given)."""
        return await newest_rejection(await self.connections.store(), job_id, entry_id)

    async def rejections(self, *, since: datetime | None = None, limit: int = 100,
                         job_id: str | None = None) -> builtins.list[Rejection]:
        """Submissions the daemon refused, newest first, with their reasons."""
        store = await self.connections.store()
        return await store.rejections(limit=limit, job_id=job_id, since=since)

    async def refused_events(self, job_id: str | None = None, limit: int = 100
                             ) -> builtins.list[RefusedEvent]:
        """Events the daemon refused as not authentic, newest first."""
        return await (await self.connections.store()).refused_events(limit=limit, job_id=job_id)

    async def why(self, job_id: str) -> Explanation:
        """A short causal account of how the job ended (or of its rejection)."""
        return await explanation(await self.connections.store(), job_id)

    # --- following -------------------------------------------------------------------------
    async def frames(self, job_id: str | None = None, *, limit: int = 20
                     ) -> AsyncIterator[Frame]:
        """The watcher's frames (state plus the daemon's notes) for one job or the job table,
        forever; a server going away shows as ``frame.banner`` and is retried."""
        store = await self.connections.store()
        redis = await self.connections.redis()
        async for frame in Follower(store, redis, self.connections.keys, job_id,
                                    limit=limit).frames():
            yield frame

    async def watch(self, job_id: str | None = None, *, limit: int = 20
                    ) -> AsyncIterator[Change]:
        """Each committed change, from the daemon's updates stream: for ``job_id`` until it is
        FINISHED_* (or its submission was rejected); without one, of the ``limit`` newest and
        every active job, forever. Retries while a server is unreachable."""
        async for change in changes(self.frames(job_id, limit=limit), job_id):
            yield change

    async def submission_refused(self, job_id: str, job: Job | None, *, entry_id: str | None,
                                 spec: JobSpec | None) -> tuple[bool, Rejection | None]:
        """Whether a submission of ``spec`` (entry ``entry_id``) is not ``job`` — the job
        holding its id has another spec, so the daemon refuses ours — and the daemon's
        rejection of it once recorded. ``(False, None)``: ``job`` is ours (or not known)."""
        if job is not None and (spec is None or same_request(job.spec, spec)):
            return False, None
        if job is None and entry_id is None:
            return False, None
        return job is not None, await self.rejection(job_id, entry_id)

    async def wait(self, job_id: str, *, timeout_s: float | None = None,
                   entry_id: str | None = None, spec: JobSpec | None = None) -> Job:
        """The job once it is FINISHED_* (whatever way it finished). ``JobRejectedError`` if
        the daemon refused its submission (``entry_id``/``spec``: the submission to check,
        as a :class:`JobHandle` passes them), ``WaitTimeoutError`` after ``timeout_s``."""
        async def refused(job: Job | None) -> tuple[bool, Rejection | None]:
            return await self.submission_refused(job_id, job, entry_id=entry_id, spec=spec)

        with anyio.move_on_after(timeout_s if timeout_s is not None else float("inf")):
            return await finished(self.frames(job_id), job_id,
                                  refused=refused if entry_id or spec else None)
        raise WaitTimeoutError(f"job {job_id} did not finish within {timeout_s:g}s")

    async def updates_position(self) -> str:
        """The id of the updates stream's last entry (``"0-0"`` when empty): read it *before*
        reading state, then follow :meth:`updates` from it, and no change is missed."""
        redis = await self.connections.redis()
        return await position(redis, self.connections.keys.updates)

    async def recent_updates(self, job_id: str | None = None, *, count: int = 20
                             ) -> builtins.list[dict[str, Any]]:
        """The last ``count`` update notes (of ``job_id`` when given), oldest first."""
        redis = await self.connections.redis()
        return await recent(redis, self.connections.keys.updates, job_id=job_id, count=count)

    async def updates(self, *, after: str, job_id: str | None = None, block_ms: int = 1000
                      ) -> AsyncGenerator[builtins.list[dict[str, Any]], None]:
        """Batches of the daemon's update notes after entry ``after`` (of ``job_id`` only,
        when given), forever; an empty batch each time ``block_ms`` passes without one.
        ``UpdatesTrimmedError`` when ``after`` is older than the stream's first entry (reload
        the state), ``BusUnavailableError`` when Redis fails (start again from the last note's
        ``entry_id``). See :mod:`orchestrator.client.updates`."""
        redis = await self.connections.redis()
        async for batch in batches(redis, self.connections.keys.updates, after=after,
                                   job_id=job_id, block_ms=block_ms):
            yield batch

    # --- acting ----------------------------------------------------------------------------
    async def cancel(self, job_id: str, *, reason: str = "cancelled by user",
                     requested_by_: str | None = None) -> CancelResult:
        """Ask the daemon to cancel the job (its participants are stopped); a job that already
        finished is left alone (``requested`` False)."""
        job = await self.get(job_id)
        if job.is_terminal:
            return CancelResult(job_id, job.status, requested=False)
        bus = await self.connections.bus()
        entry_id = await bus.request_cancel(job_id, reason=reason,
                                            requested_by=requested_by_ or requested_by())
        return CancelResult(job_id, job.status, requested=True, entry_id=entry_id)

    # --- checkpoints -----------------------------------------------------------------------
    async def checkpoints(self, job_id: str, *, final_only: bool = False,
                          round_: int | None = None) -> builtins.list[dict[str, Any]]:
        """The job's model trail: its manifest rows (round, participant, key, size, sha256,
        parent, final, at), oldest round first."""
        store = await self.connections.store()
        return await manifest_rows(store, job_id, final_only=final_only, round_=round_)

    async def presign(self, key: str, expires_s: int = 3600) -> str:
        """A presigned GET URL of a checkpoint (S3 only)."""
        request = await (await self.connections.objects()).presign_get(key, expires_s)
        return request.url

    async def download_checkpoint(self, row: Mapping[str, Any], directory: Path) -> Path:
        """Download one manifest row into ``directory`` (under its key), verified against the
        manifest (:func:`orchestrator.client.downloads.download_verified`)."""
        return await download_verified(await self.connections.objects(), row, directory)

    async def download(self, job_id: str, directory: Path | str, *, final_only: bool = False,
                       round_: int | None = None) -> builtins.list[Path]:
        """Download the job's checkpoints (all, the final one, or one round's) into
        ``directory``, each verified against the manifest; returns the files."""
        rows = await self.checkpoints(job_id, final_only=final_only, round_=round_)
        return [await self.download_checkpoint(row, Path(directory)) for row in rows]

    # --- logs ------------------------------------------------------------------------------
    async def logs(self, job_id: str, participant: str | None = None) -> builtins.list[LogLine]:
        """What the job's participants printed and logged so far (stored logs of those that
        ended, live lines of those still running)."""
        lines, _state, _chosen = await self._logs(job_id, participant)
        return lines

    async def _logs(self, job_id: str, participant: str | None
                    ) -> tuple[builtins.list[LogLine], StreamState, builtins.list[str]]:
        job = await self.get(job_id)
        chosen = chosen_participants(job, participant)
        redis = await self.connections.redis()
        state = await read_state(redis, self.connections.keys.logs(job_id))
        lines: builtins.list[LogLine] = []
        for pid in chosen:
            lines += await participant_lines(await self.connections.objects(), job, pid, state)
        return lines, state, chosen

    async def follow_logs(self, job_id: str, participant: str | None = None,
                          *, include_past: bool = True) -> AsyncIterator[LogLine]:
        """The lines so far (``include_past``), then new ones as they are printed, until the
        job ends (with ``participant``: until that participant ends)."""
        lines, state, chosen = await self._logs(job_id, participant)
        if include_past:
            for line in lines:
                yield line
        redis = await self.connections.redis()
        store = await self.connections.store()
        async for line in follow_lines(redis, store, self.connections.keys.logs(job_id), job_id,
                                       chosen=chosen, state=state,
                                       single=participant is not None):
            yield line

    # --- workers ---------------------------------------------------------------------------
    async def alive_workers(self, names: Sequence[str] | None = None
                            ) -> dict[str, dict[str, Any]]:
        """The raw registrations of the live workers (all, or those named)."""
        return await (await self.connections.bus()).alive_workers(names)

    async def workers(self) -> builtins.list[WorkerInfo]:
        """The live workers, by name: role, capacity, running participants, workloads,
        version and last heartbeat, from the registrations their agents refresh."""
        alive = await self.alive_workers()
        return [WorkerInfo.from_registration(name, info) for name, info in sorted(alive.items())]


__all__ = ["Client", "requested_by"]
