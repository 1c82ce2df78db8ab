"""One supervised participant run: from ``started`` to exactly one terminal event.

Theory of operation. The agent calls :meth:`ParticipantRun.begin` (the run joins the worker's
one heartbeat timer, so a run that waits is kept alive) and then acknowledges the command;
:meth:`ParticipantRun.run` is the run's task (in the agent's participants task group). It waits
for one of the worker's ``capacity`` slots, queues ``started`` (the workload runs from now on),
runs the workload with a :class:`~workers.context.RedisWorkloadContext` — in a child process of
its own unless the workload is ``light`` or the worker runs ``inline``
(:class:`~workers.isolation.supervisor.IsolatedWorkload`; the child's stdout and stderr are the
run's log, stored when it ends) — and ends with exactly one of

* ``finished`` — the workload returned; queued only after its checkpoint uploads drained;
* ``failed`` — the workload raised (``workload_failed``), or an upload finally failed
  (``checkpoint_failed``), or the object store stayed unreachable past the worker's retry
  budget (``storage_unavailable``), or the worker itself hit a bug;
* ``stopped`` — a stop was requested (``participant.stop``, or the worker shutting down).

It leaves the heartbeat timer before it queues the terminal event, so no heartbeat follows it.
A stop first asks the workload to stop (``checkpoint_cancel``/``receive`` raise
:class:`~workers.sdk.WorkloadCancelled`; a child process also gets SIGTERM) and cancels it for
real after the grace period (a child process gets SIGKILL).
Uploads start only with the first checkpoint (:class:`~workers.uploads.ParticipantUploads`).
Nothing a workload does escapes :meth:`ParticipantRun.run`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup
from pydantic import ValidationError
from redis.asyncio import Redis
from structlog.typing import FilteringBoundLogger

from orchestrator.bus.keys import Keys
from orchestrator.core.commands import StartParticipant
from orchestrator.core.events import (
    ParticipantFailed,
    ParticipantFinished,
    ParticipantStarted,
    ParticipantStopped,
)
from orchestrator.core.status import ErrorCode
from orchestrator.errors import StorageUnavailableError
from orchestrator.storage import CheckpointUploader, ObjectStore
from orchestrator.storage.retry import StorageRetryPolicy
from workers.config import AgentConfig, short
from workers.context import RedisWorkloadContext
from workers.heartbeats import Heartbeats
from workers.isolation.logs import ParticipantLog
from workers.isolation.supervisor import ChildTarget, IsolatedWorkload
from workers.outbox import ParticipantEvents
from workers.registry import WorkloadFn
from workers.sdk import WorkloadCancelled
from workers.uploads import ParticipantUploads

Outcome = Literal["finished", "failed", "stopped"]


@dataclass(frozen=True, slots=True)
class Ending:
    """How a participant run ended: its outcome, the message or reason, the final checkpoint."""

    outcome: Outcome
    detail: str = ""
    final_checkpoint: str | None = None


@dataclass(frozen=True, slots=True)
class WorkerResources:
    """What every participant run of one worker shares (the agent builds it once)."""

    config: AgentConfig
    redis: Redis
    keys: Keys
    store: ObjectStore
    slots: anyio.Semaphore
    heartbeats: Heartbeats
    host: TaskGroup
    """Where a participant's uploader task runs (the agent's participants task group)."""


class ParticipantRun:
    """One participant this worker runs (one ``run_id``)."""

    def __init__(
        self,
        command: StartParticipant,
        events: ParticipantEvents,
        workload: WorkloadFn,
        resources: WorkerResources,
        log: FilteringBoundLogger,
        *,
        target: ChildTarget | None = None,
    ) -> None:
        self.command = command
        self.events = events
        self.workload = workload
        self.target = target
        """Where a child process finds the workload; None: it runs inline."""
        self.capture: ParticipantLog | None = None
        """The output of the run's child process (isolated runs only)."""
        self.isolated: IsolatedWorkload | None = None
        self.resources = resources
        self.log = log
        self.scope = anyio.CancelScope()
        self.workload_scope: anyio.CancelScope | None = None
        self.context: RedisWorkloadContext | None = None
        self.uploads: ParticipantUploads | None = None
        self.stop_reason: str | None = None
        self.checkpoint_error: str | None = None
        self.storage_outage = False
        """The failure is the object store's: the code is ``storage_unavailable``."""
        self.began_at = 0.0
        self.gone: set[str] = set()  # clients of the job gone, as the daemon told
        self.gone_reason = ""

    @property
    def current_round(self) -> int | None:
        return self.context.current_round if self.context is not None else None

    def heartbeat(self) -> None:
        """Queue a heartbeat with the current round (called by the worker's heartbeat timer)."""
        self.events.heartbeat(self.current_round)

    def stop(self, reason: str, grace_s: float) -> None:
        """Ask the workload to stop; cancel it for real after ``grace_s``."""
        if self.stop_reason is None:
            self.stop_reason = reason or "stop requested"
        if self.context is None or self.workload_scope is None:
            self.scope.cancel()  # not running a workload: nothing to wait for
            return
        self.context.request_stop()
        deadline = anyio.current_time() + grace_s
        self.workload_scope.deadline = min(self.workload_scope.deadline, deadline)

    def note_gone(self, gone: list[str], reason: str) -> None:
        """Clients of the job are gone: the workload sees them in ``ctx.gone_peers`` (and a
        ``membership`` message in its inbox), now or as soon as it runs."""
        self.gone.update(gone)
        self.gone_reason = reason
        if self.context is not None:
            self.context.note_gone(gone, reason)

    def fail_checkpoint(self, message: str, error: BaseException | None = None) -> None:
        """An upload finally failed: the participant fails with ``checkpoint_failed`` (or
        ``storage_unavailable`` when the store stayed unreachable past the retry budget)."""
        if self.checkpoint_error is None:
            self.checkpoint_error = message
            self.storage_outage = isinstance(error, StorageUnavailableError)
        if self.workload_scope is not None:
            self.workload_scope.cancel()

    # --- the run ---------------------------------------------------------------------------

    def begin(self) -> None:
        """Join the heartbeat timer (the agent calls it before it acknowledges the start
        command; :meth:`run` follows in the run's own task, and says ``started`` once the
        workload has a slot to run in)."""
        self.began_at = anyio.current_time()
        self.resources.heartbeats.add(self, self.command.heartbeat_interval_s)

    async def run(self) -> None:
        """Run the participant (after :meth:`begin`) to its terminal event."""
        command = self.command
        try:
            try:
                ending = await self._execute()
            except Exception as exc:  # a bug of ours: still end the participant cleanly
                self.log.exception("participant crashed in the worker")
                ending = Ending("failed", f"worker error: {exc!r}")
            await self._store_log(ending)  # (if the run was cancelled before it did)
        finally:
            self.resources.heartbeats.remove(self)
        self._finish(ending)
        # The context and the uploads refer back to this run (its callbacks): let them go now,
        # so that an ended run is freed at once instead of by the cyclic garbage collector,
        # whose passes grow with every run still waiting for one.
        self.context = self.uploads = None
        # Let the outbox send the end first: the line below is not on the job's path.
        await anyio.lowlevel.cancel_shielded_checkpoint()
        # One INFO line per run, at its end (the start is at DEBUG).
        self.log.info(f"participant {ending.outcome}", workload=command.workload,
                      run_id=command.run_id, detail=ending.detail or None,
                      duration_s=round(anyio.current_time() - self.began_at, 3))

    async def _store_log(self, ending: Ending) -> None:
        """Store the child's whole output and mark its end on the job's log stream (before
        the terminal event, so a finished job's logs are in the store)."""
        capture, self.capture = self.capture, None
        if capture is None:
            return
        try:
            await capture.finish(self.resources.store, self._storage_retry(), ending.outcome)
        except Exception:  # a bug of ours: the participant's end must still go out
            self.log.exception("cannot store the participant's log")

    def _finish(self, ending: Ending) -> None:
        """Queue the participant's one terminal event."""
        outcome, detail = ending.outcome, ending.detail
        try:
            if outcome == "finished":
                self.events.emit(ParticipantFinished, final_checkpoint=ending.final_checkpoint)
                return
            if outcome == "stopped":
                self.events.emit(ParticipantStopped, reason=short(detail))
                return
        except ValidationError as exc:
            detail = f"invalid workload result: {short(str(exc))}"
        code = (ErrorCode.STORAGE_UNAVAILABLE if self.storage_outage
                else ErrorCode.CHECKPOINT_FAILED if self.checkpoint_error is not None
                else ErrorCode.WORKLOAD_FAILED)
        self.events.emit(ParticipantFailed, code=code, message=short(detail))

    async def _execute(self) -> Ending:
        """Wait for a slot, run the workload, drain its uploads."""
        ending: Ending | None = None
        uploads = self.uploads = ParticipantUploads(
            self.resources.host, self._new_uploader,
            name=f"{self.command.job_id}/{self.command.participant}", log=self.log,
        )
        try:
            with self.scope:
                async with self.resources.slots:
                    self.events.emit(ParticipantStarted)
                    self.log.debug("participant started", workload=self.command.workload,
                                   run_id=self.command.run_id)
                    ending = await self._call_workload(uploads)
                    if ending.outcome == "finished":
                        await uploads.drain()
                        if self.checkpoint_error is not None:
                            ending = Ending("failed", self.checkpoint_error)
                    elif uploads.pending:
                        with anyio.move_on_after(self.resources.config.upload_drain_on_stop_s):
                            await uploads.drain()
                    await self._store_log(ending)  # (in the slot: the run has not ended yet)
        finally:
            uploads.close()  # abandons uploads still running
        if ending is None:  # cancelled while waiting for a slot or draining uploads
            if self.checkpoint_error is not None:
                return Ending("failed", self.checkpoint_error)
            return Ending("stopped", self.stop_reason or "stopped")
        return ending

    def _new_uploader(self) -> CheckpointUploader:
        cfg = self.resources.config
        return CheckpointUploader(
            self.resources.store,
            concurrency=cfg.upload_concurrency,
            max_buffered_bytes=cfg.upload_buffer_bytes,
            retry=self._storage_retry(),
            log=self.log,
        )

    def _storage_retry(self) -> StorageRetryPolicy:
        """The one retry policy of this run's object-store calls (uploads, loads, blobs)."""
        cfg = self.resources.config
        return StorageRetryPolicy(
            budget_s=cfg.storage_retry_s, base_s=cfg.upload_backoff_base_s,
            cap_s=cfg.upload_backoff_max_s, max_attempts=cfg.upload_max_attempts,
        )

    async def _call_workload(self, uploads: ParticipantUploads) -> Ending:
        resources = self.resources
        context = RedisWorkloadContext(
            self.command,
            redis=resources.redis,
            keys=resources.keys,
            store=resources.store,
            uploads=uploads,
            events=self.events,
            log=self.log,
            on_checkpoint_failed=self.fail_checkpoint,
            storage_retry=self._storage_retry(),
        )
        ending: Ending | None = None
        if self.gone:  # heard before the workload ran (e.g. clients skipped at dispatch)
            context.note_gone(sorted(self.gone), self.gone_reason)
        workload = self.workload
        if self.target is not None:
            cfg, command = resources.config, self.command
            self.capture = ParticipantLog(
                resources.redis, resources.keys, job_id=command.job_id,
                participant=command.participant, run_id=command.run_id, log=self.log,
                max_lines=cfg.log_max_lines, max_bytes=cfg.log_max_bytes)
            workload = self.isolated = IsolatedWorkload(self.target, self.capture, self.log)
        with anyio.CancelScope() as scope:
            self.workload_scope, self.context = scope, context
            if self.stop_reason is not None:
                self.stop(self.stop_reason, resources.config.stop_grace_s)
            try:
                result = await workload(context)
            except WorkloadCancelled as exc:
                ending = Ending("stopped", self.stop_reason or str(exc))
            except Exception as exc:
                error = _leaf(exc)
                message = str(error) or type(error).__name__
                if self.stop_reason is not None:
                    self.log.info("workload raised while stopping", error=message)
                    ending = Ending("stopped", self.stop_reason)
                else:
                    self.log.warning("workload failed", error=message,
                                     error_type=type(error).__name__)
                    self.storage_outage = _is_outage(error)
                    ending = Ending("failed", message)
            else:
                final = getattr(result, "final_checkpoint", None)
                if final is not None and not isinstance(final, str):
                    ending = Ending("failed", f"final_checkpoint must be a key, not {final!r}")
                else:
                    ending = Ending("finished", "", final)
        self.workload_scope = None
        if self.checkpoint_error is not None:
            return Ending("failed", self.checkpoint_error)
        if ending is None:  # cancelled: the stop grace ran out
            reason = self.stop_reason or "stopped"
            if self.isolated is not None and self.isolated.killed:
                reason += " (the workload's process was killed after the stop grace)"
            return Ending("stopped", reason)
        return ending


def _is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it was raised from) says the object store was unreachable."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, StorageUnavailableError):
            return True
        seen = seen.__cause__
    return False


def _leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc
