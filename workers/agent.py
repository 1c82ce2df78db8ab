"""The worker agent: runs the participants a daemon assigns to this worker.

Theory of operation. :meth:`WorkerAgent.run` is one anyio task group holding

* the outbox sender (:class:`~workers.outbox.Outbox`): every event goes through it, in order,
  everything queued at each wake-up in one round trip, retried until Redis takes it;
* the registration loop (:func:`~workers.registration.keep_registered`), so the daemon knows
  this worker is alive;
* the heartbeat timer (:class:`~workers.heartbeats.Heartbeats`): one task for every
  participant, each beating at the ``heartbeat_interval_s`` of its start command;
* the command loop (:mod:`workers.command_loop`): a
  :class:`~orchestrator.bus.consumer.StreamConsumer` on this worker's command stream. Each
  entry of a read is handled in turn (:meth:`WorkerAgent._handle_entry`) — a
  ``participant.start`` once its run exists and beats (it says ``started`` when it gets a
  slot), a ``participant.stop`` once the stop was requested, a bad entry dead-lettered — and
  then the handled ones are acknowledged with one XACK for the whole read, shielded from a
  shutdown;
* one task per participant (:class:`~workers.participant.ParticipantRun`), whose workload runs
  in a child process of its own (:mod:`workers.isolation`) unless the workload is declared
  ``light``, the worker runs ``isolation="inline"``, or a child could not import it (a
  function defined inside another: logged once, run inline).

Every event of a run is signed with the run secret its start command carries (a stop command
carries it too, so a worker that no longer runs the participant can still say ``stopped``);
the secret is never logged. Starts are deduplicated by ``run_id``: a reconciling daemon may
send one again. A start is refused with a ``failed`` event (no ``started``) when the worker
has the other role (``cannot_schedule``), does not know the workload, or its ``data_path`` is
not allowed under the worker's data root, or its config is not valid (``invalid_spec``, see
:mod:`workers.admission`).
Nothing a workload does can crash the agent: its exceptions become ``failed`` events.

:meth:`WorkerAgent.shutdown` (SIGTERM/SIGINT in the CLI) stops taking commands, stops every
participant with reason "worker shutting down", flushes the outbox for at most
``flush_timeout_s`` and returns.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import anyio
from anyio.abc import TaskGroup, TaskStatus
from redis.asyncio import Redis
from structlog.typing import FilteringBoundLogger

from orchestrator import __version__
from orchestrator.bus import Bus, Entry
from orchestrator.bus.keys import Keys
from orchestrator.core.commands import MembershipChanged, StartParticipant, StopParticipant
from orchestrator.core.events import ParticipantFailed, ParticipantStopped
from orchestrator.logs import get_logger
from orchestrator.storage import ObjectStore
from workers.admission import Refusal, admit
from workers.command_loop import command_consumer, read_commands
from workers.commands import Recent, decode_command
from workers.config import SHUTDOWN_REASON, AgentConfig, short
from workers.heartbeats import Heartbeats
from workers.isolation.supervisor import ChildTarget, child_target
from workers.outbox import Outbox, ParticipantEvents
from workers.participant import ParticipantRun, WorkerResources
from workers.registration import deregister, keep_registered
from workers.registry import (
    Workload,
    offered_workloads,
    workload_source,
)

__all__ = ["SHUTDOWN_REASON", "AgentConfig", "WorkerAgent"]


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
        self.heartbeats = Heartbeats(self.log)
        self.runs: dict[str, ParticipantRun] = {}
        self._seen: Recent[str] = Recent()
        self._ended: Recent[tuple[str, str]] = Recent()
        self._slots = anyio.Semaphore(config.capacity)
        self._commands_scope = anyio.CancelScope()
        self._shutdown = anyio.Event()
        #: Set once the agent is registered and reads its commands (``/readyz``).
        self.ready = anyio.Event()
        self._participants: TaskGroup | None = None
        self._resources: WorkerResources | None = None
        self._targets: dict[tuple[str, int], ChildTarget | None] = {}

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def shutdown_requested(self) -> bool:
        return self._shutdown.is_set()

    def shutdown(self) -> None:
        """Stop taking commands, stop every participant, flush events, return from ``run``."""
        self._shutdown.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run until :meth:`shutdown` (or cancellation)."""
        cfg = self.config
        async with anyio.create_task_group() as tg:
            await tg.start(self.outbox.run)
            await tg.start(self.heartbeats.run, name="heartbeats")
            register_scope = anyio.CancelScope()

            async def register(*, task_status: TaskStatus[None]) -> None:
                with register_scope:
                    await keep_registered(
                        self.bus, cfg.name, cfg.role.value, ttl_s=cfg.ttl_s, info=self._info,
                        log=self.log, task_status=task_status,
                    )

            await tg.start(register)
            async with anyio.create_task_group() as participants:
                self._participants = participants
                self._resources = WorkerResources(
                    config=cfg, redis=self.redis, keys=self.keys, store=self.store,
                    slots=self._slots, heartbeats=self.heartbeats, host=participants,
                )
                await participants.start(self._command_loop)
                self.log.info("worker ready", capacity=cfg.capacity)
                self.ready.set()
                task_status.started()
                await self._shutdown.wait()
                self.log.info("worker shutting down", running=len(self.runs))
                self._commands_scope.cancel()
                for run in list(self.runs.values()):
                    run.stop(SHUTDOWN_REASON, cfg.shutdown_grace_s)
            self._participants = self._resources = None
            if not await self.outbox.flush(cfg.flush_timeout_s):
                self.log.error("events not sent before shutdown", lost=self.outbox.pending)
            register_scope.cancel()
            with anyio.move_on_after(2.0, shield=True):
                await deregister(self.bus, cfg.name, self.log)
            tg.cancel_scope.cancel()
        self.log.info("worker stopped")

    def _info(self) -> dict[str, Any]:
        return {
            "capacity": self.config.capacity,
            "running": len(self.runs),
            "participants": sorted(f"{r.command.job_id}/{r.command.participant}"
                                   for r in self.runs.values()),
            "version": __version__,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "workloads": offered_workloads(),
            **self.config.info,
        }

    # --- commands --------------------------------------------------------------------------

    async def _command_loop(
        self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        consumer = command_consumer(self.redis, self.keys, self.config)
        task_status.started()
        with self._commands_scope:
            await read_commands(consumer, self._handle_entry, log=self.log,
                                shutdown=self._shutdown)

    async def _handle_entry(self, entry: Entry) -> str | None:
        """Carry out one entry's command; return why it cannot be carried out, if it cannot."""
        command = decode_command(entry, self.config.name)
        if isinstance(command, str):
            return command
        if isinstance(command, StartParticipant):
            self._start(command)
        elif isinstance(command, MembershipChanged):
            self._membership(command)
        else:
            self._stop(command)
        return None

    def _membership(self, command: MembershipChanged) -> None:
        """Clients of a job this worker serves are gone: its server run learns it."""
        for run in self.runs.values():
            if (run.command.job_id == command.job_id
                    and run.command.participant == command.participant):
                self.log.info("clients gone", job_id=command.job_id, gone=command.gone,
                              reason=command.reason)
                run.note_gone(command.gone, command.reason)

    def _events(self, job_id: str, participant: str, secret: str | None) -> ParticipantEvents:
        """The event stamper of one run, signing with the run secret of its command."""
        return ParticipantEvents(
            self.outbox, job_id=job_id, participant=participant, worker=self.config.name,
            secret=secret,
        )

    def _start(self, command: StartParticipant) -> None:
        log = self.log.bind(job_id=command.job_id, participant=command.participant)
        if command.run_id in self._seen:
            log.info("ignored a repeated start", run_id=command.run_id)
            return
        self._seen.add(command.run_id)
        events = self._events(command.job_id, command.participant, command.run_secret)
        admitted = admit(command, self.config)
        if isinstance(admitted, Refusal):
            log.warning("refused a start", reason=admitted.message)
            events.emit(ParticipantFailed, code=admitted.code, message=short(admitted.message))
            return
        command, spec = admitted
        assert self._participants is not None and self._resources is not None
        run = ParticipantRun(command, events, spec.fn, self._resources, log,
                             target=self._target(command.workload, spec))
        self.runs[command.run_id] = run
        run.begin()  # beating before the command is acknowledged
        self._participants.start_soon(
            self._supervise, run, name=f"participant {command.job_id}/{command.participant}"
        )
        if self._shutdown.is_set():
            run.stop(SHUTDOWN_REASON, self.config.shutdown_grace_s)

    def _target(self, name: str, spec: Workload) -> ChildTarget | None:
        """Where a child process finds workload ``name``; None: run it inline (the worker
        runs ``--isolation inline``, the workload is ``light``, or a child cannot import it,
        e.g. a function defined inside another: that is logged once)."""
        if self.config.isolation == "inline" or spec.light:
            return None
        key = (name, id(spec.fn))
        if key not in self._targets:
            target = self._targets[key] = child_target(name, spec.fn, workload_source(name))
            if target is None:
                self.log.info("workload runs inline: a child process cannot import it",
                              workload=name)
        return self._targets[key]

    async def _supervise(self, run: ParticipantRun) -> None:
        command = run.command
        try:
            await run.run()
            self._ended.add((command.job_id, command.participant))
        finally:
            self.runs.pop(command.run_id, None)

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
        if not runs and (command.job_id, command.participant) not in self._ended:
            # Not running here (lost with an earlier worker process, or never started): say
            # so, so that a cancelling job need not wait for its grace period.
            self._events(command.job_id, command.participant, command.run_secret).emit(
                ParticipantStopped, reason="not running on this worker"
            )

