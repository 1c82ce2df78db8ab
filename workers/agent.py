"""The worker agent: runs the participants a daemon assigns to this worker.

Theory of operation. :meth:`WorkerAgent.run` is one anyio task group holding

* the outbox sender (:class:`~workers.outbox.Outbox`): every event goes through it, in order,
  retried until Redis takes it;
* the registration loop: ``Bus.register_worker`` every ``ttl_s / 3`` so the daemon knows this
  worker is alive (a SIGKILLed worker simply stops refreshing it);
* the command loop: a :class:`~orchestrator.bus.streams.StreamConsumer` on this worker's command
  stream. A ``participant.start`` is acknowledged once its participant task runs and its
  ``started`` event is queued; a ``participant.stop`` once the stop was requested;
* one task per participant (:class:`ParticipantRun`), each in its own cancel scope. It queues
  ``started``, sends heartbeats every ``heartbeat_interval_s`` from then on, waits for one of
  ``capacity`` slots, then runs the workload with a :class:`~workers.context.RedisWorkloadContext`
  and a per-participant :class:`~orchestrator.storage.CheckpointUploader`, and ends with exactly
  one of ``finished`` (after the uploads drained), ``failed`` or ``stopped``.

A stop first asks the workload to stop (``checkpoint_cancel``/``receive`` raise
:class:`~workers.sdk.WorkloadCancelled`) and cancels it for real after ``stop_grace_s``.
Starts are deduplicated by ``run_id``: a reconciling daemon may send one again. Nothing a
workload does can crash the agent: its exceptions become ``failed`` events.

:meth:`WorkerAgent.shutdown` (SIGTERM/SIGINT in the CLI) stops taking commands, stops every
participant with reason "worker shutting down", flushes the outbox for at most
``flush_timeout_s`` and returns.
"""

from __future__ import annotations

import functools
import os
import socket
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
from anyio.abc import TaskGroup, TaskStatus
from pydantic import ValidationError
from redis.asyncio import Redis
from structlog.typing import FilteringBoundLogger

from orchestrator.bus.keys import Keys
from orchestrator.bus.retry import Backoff
from orchestrator.bus.streams import Bus, Entry, StreamConsumer
from orchestrator.core.commands import COMMAND_ADAPTER, StartParticipant, StopParticipant
from orchestrator.core.events import (
    ParticipantFailed,
    ParticipantFinished,
    ParticipantStarted,
    ParticipantStopped,
)
from orchestrator.core.status import ErrorCode, Role
from orchestrator.errors import BusError, UnknownWorkloadError
from orchestrator.logs import get_logger
from orchestrator.storage import CheckpointUploader, ObjectStore
from workers.context import RedisWorkloadContext
from workers.outbox import Outbox, ParticipantEvents
from workers.registry import WorkloadFn, get_workload
from workers.sdk import WorkloadCancelled

SHUTDOWN_REASON = "worker shutting down"
_SEEN_RUNS = 10_000
_MAX_MESSAGE = 4000


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """Knobs of one worker agent (the CLI fills them from ``Settings``)."""

    name: str
    role: Role
    capacity: int = 4
    ttl_s: float = 10.0
    block_ms: int = 1000
    batch: int = 16
    max_deliveries: int = 5
    reclaim_idle_ms: int = 30_000
    stream_maxlen: int = 1_000_000
    stop_grace_s: float = 5.0
    """How long a stopped workload may take to stop on its own before it is cancelled."""
    shutdown_grace_s: float = 3.0
    flush_timeout_s: float = 10.0
    """How long a shutdown waits for unsent events."""
    upload_drain_on_stop_s: float = 5.0
    """How long a stopped participant waits for its checkpoint uploads."""
    upload_concurrency: int = 2
    upload_buffer_bytes: int = 256 * 1024 * 1024
    upload_max_attempts: int = 5
    upload_deadline_s: float | None = 300.0
    upload_backoff_base_s: float = 0.2
    upload_backoff_max_s: float = 5.0
    info: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.capacity < 1:
            raise ValueError("capacity must be at least 1")


Outcome = Literal["finished", "failed", "stopped"]


class ParticipantRun:
    """One participant this worker runs (one ``run_id``)."""

    def __init__(self, command: StartParticipant, events: ParticipantEvents) -> None:
        self.command = command
        self.events = events
        self.scope = anyio.CancelScope()
        self.workload_scope: anyio.CancelScope | None = None
        self.context: RedisWorkloadContext | None = None
        self.stop_reason: str | None = None
        self.checkpoint_error: str | None = None
        self.done = anyio.Event()

    @property
    def current_round(self) -> int | None:
        return self.context.current_round if self.context is not None else None

    def stop(self, reason: str, grace_s: float) -> None:
        """Ask the workload to stop; cancel it for real after ``grace_s``."""
        if self.stop_reason is None:
            self.stop_reason = reason or "stop requested"
        if self.context is None or self.workload_scope is None:
            self.scope.cancel()  # not running a workload yet: nothing to wait for
            return
        self.context.request_stop()
        deadline = anyio.current_time() + grace_s
        self.workload_scope.deadline = min(self.workload_scope.deadline, deadline)

    def fail_checkpoint(self, message: str) -> None:
        """An upload finally failed: the participant fails with ``checkpoint_failed``."""
        if self.checkpoint_error is None:
            self.checkpoint_error = message
        if self.workload_scope is not None:
            self.workload_scope.cancel()


class WorkerAgent:
    """Consumes one worker's command stream and runs its participants."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        redis: Redis,
        keys: Keys,
        store: ObjectStore,
        log: FilteringBoundLogger | None = None,
    ) -> None:
        self.config = config
        self.redis = redis
        self.keys = keys
        self.store = store
        self.log: FilteringBoundLogger = (log or get_logger("workers.agent")).bind(
            worker=config.name, role=config.role.value
        )
        self.bus = Bus(redis, keys, maxlen=config.stream_maxlen)
        self.outbox = Outbox(self.bus.publish_events, log=self.log)
        self.runs: dict[str, ParticipantRun] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._ended: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._slots = anyio.Semaphore(config.capacity)
        self._commands_scope = anyio.CancelScope()
        self._shutdown = anyio.Event()
        self._participants: TaskGroup | None = None

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def shutdown_requested(self) -> bool:
        return self._shutdown.is_set()

    def shutdown(self) -> None:
        """Stop taking commands, stop every participant, flush events, return from ``run``."""
        self._shutdown.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run until :meth:`shutdown` (or cancellation)."""
        async with anyio.create_task_group() as tg:
            await tg.start(self.outbox.run)
            register_scope = anyio.CancelScope()

            async def register(*, task_status: TaskStatus[None]) -> None:
                with register_scope:
                    await self._register_loop(task_status=task_status)

            await tg.start(register)
            async with anyio.create_task_group() as participants:
                self._participants = participants
                await participants.start(self._command_loop)
                self.log.info("worker ready", capacity=self.config.capacity)
                task_status.started()
                await self._shutdown.wait()
                self.log.info("worker shutting down", running=len(self.runs))
                self._commands_scope.cancel()
                for run in list(self.runs.values()):
                    run.stop(SHUTDOWN_REASON, self.config.shutdown_grace_s)
            self._participants = None
            if not await self.outbox.flush(self.config.flush_timeout_s):
                self.log.error("events not sent before shutdown", lost=self.outbox.pending)
            register_scope.cancel()
            with anyio.move_on_after(2.0, shield=True):
                await self._deregister()
            tg.cancel_scope.cancel()
        self.log.info("worker stopped")

    async def _register_loop(
        self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        interval_s = self.config.ttl_s / 3
        failures = 0
        started = False
        while True:
            try:
                await self.bus.register_worker(
                    self.config.name, self.config.role.value, ttl_s=self.config.ttl_s,
                    info=self._info(),
                )
            except Exception as exc:  # keep trying: Redis may come back
                failures += 1
                if failures == 1 or failures % 20 == 0:
                    self.log.warning("cannot register worker", error=str(exc), attempts=failures)
            else:
                if failures:
                    self.log.info("worker registered again", attempts=failures)
                failures = 0
            if not started:
                started = True
                task_status.started()
            await anyio.sleep(interval_s if failures == 0 else min(interval_s, 0.5))

    def _info(self) -> dict[str, Any]:
        return {
            "capacity": self.config.capacity,
            "running": len(self.runs),
            "pid": os.getpid(),
            "host": socket.gethostname(),
            **self.config.info,
        }

    async def _deregister(self) -> None:
        try:
            await self.bus.unregister_worker(self.config.name)
        except BusError as exc:
            self.log.warning("cannot deregister worker", error=str(exc))

    # --- commands --------------------------------------------------------------------------

    async def _command_loop(
        self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        consumer = StreamConsumer(
            self.redis,
            [self.keys.commands(self.config.name)],
            self.keys.worker_group,
            self.config.name,
            batch=self.config.batch,
            block_ms=self.config.block_ms,
            max_deliveries=self.config.max_deliveries,
            reclaim_idle_ms=self.config.reclaim_idle_ms,
            dead_letter=self.keys.dead_letter,
        )
        task_status.started()
        with self._commands_scope:
            await self._retry_bus("create the command group", consumer.ensure_groups)
            backoff = Backoff()
            while True:
                # Everything handled so far is acknowledged, so our pending list holds only
                # entries whose XREADGROUP reply a dropped connection lost: read them again.
                consumer.rewind()
                try:
                    entries = await consumer.read()
                except BusError as exc:  # read retries connection errors itself; not these
                    self.log.warning("cannot read commands", error=str(exc))
                    await backoff.sleep()
                    continue
                backoff.reset()
                for entry in entries:
                    try:
                        await self._handle_entry(consumer, entry)
                    except Exception as exc:  # a bug of ours: never let it kill the worker
                        self.log.exception("cannot handle a command", entry_id=entry.id)
                        reason = f"worker error: {exc!r}"
                        await self._retry_bus(
                            "dead-letter a command",
                            functools.partial(consumer.dead_letter, entry, reason),
                        )

    async def _handle_entry(self, consumer: StreamConsumer, entry: Entry) -> None:
        problem: str | None = None
        raw = entry.fields.get("command")
        if raw is None:
            problem = "command entry has no 'command' field"
        else:
            try:
                command = COMMAND_ADAPTER.validate_json(raw)
            except ValidationError as exc:
                problem = f"invalid command: {_short(str(exc))}"
            else:
                if command.worker != self.config.name:
                    problem = (f"command for worker {command.worker!r} on the command stream of "
                               f"{self.config.name!r}")
                elif isinstance(command, StartParticipant):
                    await self._start(command)
                else:
                    self._stop(command)
        if problem is not None:
            reason = problem
            await self._retry_bus(
                "dead-letter a command", lambda: consumer.dead_letter(entry, reason)
            )
        else:
            await self._retry_bus("acknowledge a command", lambda: consumer.ack([entry]))

    async def _retry_bus(self, what: str, op: Callable[[], Awaitable[None]]) -> None:
        """Run ``op`` until Redis takes it (commands are idempotent here)."""
        backoff = Backoff(cap_s=2.0)
        while True:
            try:
                await op()
            except BusError as exc:
                if backoff.attempts == 0 or backoff.attempts % 20 == 0:
                    self.log.warning(f"cannot {what}; retrying", error=str(exc))
                await backoff.sleep()
            else:
                return

    async def _start(self, command: StartParticipant) -> None:
        log = self.log.bind(job_id=command.job_id, participant=command.participant)
        if command.run_id in self._seen:
            log.info("ignored a repeated start", run_id=command.run_id)
            return
        self._remember(command.run_id)
        events = ParticipantEvents(
            self.outbox, job_id=command.job_id, participant=command.participant,
            worker=self.config.name,
        )
        if command.role is not self.config.role:
            message = (
                f"worker {self.config.name} is a {self.config.role.value} worker and cannot run "
                f"{command.participant}, whose role is {command.role.value}"
            )
            log.warning("refused a start", reason=message)
            events.emit(ParticipantFailed, code=ErrorCode.CANNOT_SCHEDULE, message=message)
            return
        try:
            workload = get_workload(command.workload)
        except UnknownWorkloadError as exc:
            log.warning("refused a start", reason=str(exc))
            events.emit(ParticipantFailed, code=ErrorCode.INVALID_SPEC, message=_short(str(exc)))
            return
        run = ParticipantRun(command, events)
        assert self._participants is not None
        await self._participants.start(self._run_participant, run, workload)

    def _stop(self, command: StopParticipant) -> None:
        runs = [
            run for run in self.runs.values()
            if run.command.job_id == command.job_id
            and run.command.participant == command.participant
        ]
        for run in runs:
            self.log.info(
                "stopping participant", job_id=command.job_id, participant=command.participant,
                reason=command.reason,
            )
            run.stop(command.reason, self.config.stop_grace_s)
        if not runs and (command.job_id, command.participant) in self._ended:
            return  # it ended here and said so already
        if not runs:
            # Not running here (already ended, or lost with an earlier worker process): say so,
            # so that a cancelling job need not wait for its grace period.
            ParticipantEvents(
                self.outbox, job_id=command.job_id, participant=command.participant,
                worker=self.config.name,
            ).emit(ParticipantStopped, reason="not running on this worker")

    def _remember(self, run_id: str) -> None:
        self._seen[run_id] = None
        while len(self._seen) > _SEEN_RUNS:
            self._seen.popitem(last=False)

    def _remember_end(self, job_id: str, participant: str) -> None:
        self._ended[(job_id, participant)] = None
        while len(self._ended) > _SEEN_RUNS:
            self._ended.popitem(last=False)

    # --- participants ----------------------------------------------------------------------

    async def _run_participant(
        self, run: ParticipantRun, workload: WorkloadFn, *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        command = run.command
        log = self.log.bind(job_id=command.job_id, participant=command.participant)
        self.runs[command.run_id] = run
        try:
            run.events.emit(ParticipantStarted)
            log.info("participant started", workload=command.workload, run_id=command.run_id)
            task_status.started()
            if self._shutdown.is_set():
                run.stop(SHUTDOWN_REASON, self.config.shutdown_grace_s)
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._heartbeats, run)
                    outcome, detail, final_checkpoint = await self._execute(run, workload, log)
                    tg.cancel_scope.cancel()
            except Exception as exc:  # a bug of ours: still end the participant cleanly
                log.exception("participant crashed in the worker")
                outcome, detail, final_checkpoint = "failed", f"worker error: {exc!r}", None
            self._finish(run, outcome, detail, final_checkpoint)
            self._remember_end(command.job_id, command.participant)
            log.info(f"participant {outcome}", detail=detail or None)
        finally:
            self.runs.pop(command.run_id, None)
            run.done.set()

    def _finish(
        self, run: ParticipantRun, outcome: Outcome, detail: str, final_checkpoint: str | None
    ) -> None:
        """Queue the participant's one terminal event."""
        try:
            if outcome == "finished":
                run.events.emit(ParticipantFinished, final_checkpoint=final_checkpoint)
                return
            if outcome == "stopped":
                run.events.emit(ParticipantStopped, reason=_short(detail))
                return
        except ValidationError as exc:
            outcome, detail = "failed", f"invalid workload result: {_short(str(exc))}"
        code = (ErrorCode.CHECKPOINT_FAILED if run.checkpoint_error is not None
                else ErrorCode.WORKLOAD_FAILED)
        run.events.emit(ParticipantFailed, code=code, message=_short(detail))

    async def _heartbeats(self, run: ParticipantRun) -> None:
        interval_s = max(run.command.heartbeat_interval_s, 0.01)
        while True:
            await anyio.sleep(interval_s)
            run.events.heartbeat(run.current_round)

    async def _execute(
        self, run: ParticipantRun, workload: WorkloadFn, log: FilteringBoundLogger
    ) -> tuple[Outcome, str, str | None]:
        """Run the workload; return (outcome, message or reason, final checkpoint)."""
        outcome: tuple[Outcome, str, str | None] | None = None
        with run.scope:
            async with self._slots:
                outcome = await self._with_uploader(run, workload, log)
        if outcome is None:  # cancelled while waiting for a slot or draining uploads
            if run.checkpoint_error is not None:
                return "failed", run.checkpoint_error, None
            return "stopped", run.stop_reason or "stopped", None
        return outcome

    async def _with_uploader(
        self, run: ParticipantRun, workload: WorkloadFn, log: FilteringBoundLogger
    ) -> tuple[Outcome, str, str | None]:
        cfg = self.config
        result_outcome: tuple[Outcome, str, str | None]
        with anyio.CancelScope() as uploads_scope:
            async with CheckpointUploader(
                self.store,
                concurrency=cfg.upload_concurrency,
                max_buffered_bytes=cfg.upload_buffer_bytes,
                max_attempts=cfg.upload_max_attempts,
                deadline_s=cfg.upload_deadline_s,
                backoff_base_s=cfg.upload_backoff_base_s,
                backoff_max_s=cfg.upload_backoff_max_s,
            ) as uploader:
                context = RedisWorkloadContext(
                    run.command,
                    redis=self.redis,
                    keys=self.keys,
                    store=self.store,
                    uploader=uploader,
                    events=run.events,
                    log=log.bind(worker=cfg.name),
                    on_checkpoint_failed=run.fail_checkpoint,
                )
                result_outcome = await self._call_workload(run, context, workload, log)
                if result_outcome[0] == "finished":
                    await uploader.drain(raise_on_failure=False)
                    if run.checkpoint_error is not None:
                        result_outcome = ("failed", run.checkpoint_error, None)
                else:
                    with anyio.move_on_after(cfg.upload_drain_on_stop_s):
                        await uploader.drain(raise_on_failure=False)
                    uploads_scope.cancel()  # abandon uploads still running
        return result_outcome

    async def _call_workload(
        self,
        run: ParticipantRun,
        context: RedisWorkloadContext,
        workload: WorkloadFn,
        log: FilteringBoundLogger,
    ) -> tuple[Outcome, str, str | None]:
        outcome: tuple[Outcome, str, str | None] | None = None
        with anyio.CancelScope() as scope:
            run.workload_scope, run.context = scope, context
            if run.stop_reason is not None:
                run.stop(run.stop_reason, self.config.stop_grace_s)
            try:
                result = await workload(context)
            except WorkloadCancelled as exc:
                outcome = ("stopped", run.stop_reason or str(exc), None)
            except Exception as exc:
                error = _leaf(exc)
                message = str(error) or type(error).__name__
                if run.stop_reason is not None:
                    log.info("workload raised while stopping", error=message)
                    outcome = ("stopped", run.stop_reason, None)
                else:
                    log.warning("workload failed", error=message, error_type=type(error).__name__)
                    outcome = ("failed", message, None)
            else:
                final = getattr(result, "final_checkpoint", None)
                if final is not None and not isinstance(final, str):
                    outcome = ("failed", f"final_checkpoint must be a key, not {final!r}", None)
                else:
                    outcome = ("finished", "", final)
        run.workload_scope = None
        if run.checkpoint_error is not None:
            return "failed", run.checkpoint_error, None
        if outcome is None:  # cancelled: the stop grace ran out
            return "stopped", run.stop_reason or "stopped", None
        return outcome


def _leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _short(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"
