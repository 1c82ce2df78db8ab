"""Simulated workers and an in-process daemon, for the daemon tests.

A ``SimWorker`` is what a real worker looks like on the bus: it registers with a TTL, reads its
command stream through a consumer group, and publishes participant events (started, rounds,
metrics, heartbeats, finished / failed / stopped) with growing ``seq``. ``mode`` picks its
behaviour: ``ok``, ``fail`` (fails after starting), ``silent`` (starts, then never speaks
again: a lost worker), ``hang`` (heartbeats until stopped). Like a real worker it signs every
event with the run secret of its start (or stop) command.

``fast_options`` gives every daemon the same ``TEST_DAEMON_KEY`` (replicas share the key);
``run_secret_for`` derives a run's secret for tests that write events themselves.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import anyio
import anyio.abc

from orchestrator.bus import Bus, Redis, StreamConsumer
from orchestrator.bus.keys import Keys
from orchestrator.core import (
    COMMAND_ADAPTER,
    Event,
    Heartbeat,
    Job,
    JobSpec,
    JobStatus,
    MembershipChanged,
    ParticipantFailed,
    ParticipantFinished,
    ParticipantStarted,
    ParticipantStopped,
    RoundMetrics,
    RoundStarted,
    StartParticipant,
    StopParticipant,
)
from orchestrator.core.auth import run_secret, sign_event
from orchestrator.daemon import Daemon, DaemonOptions
from orchestrator.store import JobStore

Mode = Literal["ok", "fail", "silent", "hang"]
WORKLOADS = frozenset({"noop", "sleep", "fail", "fedavg"})
TEST_DAEMON_KEY = b"the daemon key of the daemon tests"


def run_secret_for(job_id: str, participant: str, run_id: str,
                   key: bytes = TEST_DAEMON_KEY) -> str:
    """The secret the test daemons give this run."""
    return run_secret(key, job_id, participant, run_id)


def signed(event: Any, secret: str | None) -> Any:
    """``event`` with its MAC (unchanged without a secret)."""
    return event if secret is None else sign_event(secret, event)


def fast_options(namespace: str, **overrides: Any) -> DaemonOptions:
    values: dict[str, Any] = {
        "namespace": namespace,
        "event_shards": 2,
        "consumer": "d1",
        "batch_size": 100,
        "block_ms": 100,
        "reclaim_idle_ms": 1000,
        "reaper_interval_s": 0.1,
        "admission_poll_s": 0.1,
        "admission_idle_s": 0.5,
        "catch_up_wait_s": 2.0,
        "daemon_key": TEST_DAEMON_KEY,
    }
    values.update(overrides)
    return DaemonOptions(**values)


def job_spec(job_id: str | None = None, clients: int = 2, *, rounds: int = 2,
             server: str = "srv", client_prefix: str = "cli", min_clients: int | None = None,
             workload: str = "noop", **timeouts: float | None) -> JobSpec:
    data: dict[str, Any] = {
        "job_id": job_id,
        "workload": workload,
        "server": {"worker": server},
        "clients": [{"worker": f"{client_prefix}{i}"} for i in range(clients)],
        "rounds": rounds,
        "min_clients": min_clients,
        "timeouts": {"heartbeat_s": 5, "start_s": 10, "round_s": 10, "job_s": 30,
                     "cancel_grace_s": 2, **timeouts},
    }
    return JobSpec.model_validate(data)


@dataclass
class SimWorker:
    """A worker on the bus, driven by ``mode``; events it published are kept in ``sent``."""

    redis: Redis
    keys: Keys
    name: str
    role: Literal["server", "client"]
    mode: Mode = "ok"
    step_s: float = 0.01
    ttl_s: float = 2.0
    sent: list[Event] = field(default_factory=list)
    started_runs: set[str] = field(default_factory=set)
    #: The start commands received, by run id (with their secrets).
    starts: dict[str, StartParticipant] = field(default_factory=dict)
    stops: list[StopParticipant] = field(default_factory=list)
    memberships: list[MembershipChanged] = field(default_factory=list)
    _scopes: dict[tuple[str, str], anyio.CancelScope] = field(default_factory=dict)
    _seq: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def bus(self) -> Bus:
        return Bus(self.redis, self.keys)

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                  ) -> None:
        consumer = StreamConsumer(self.redis, [self.keys.commands(self.name)],
                                  self.keys.worker_group, self.name, batch=50, block_ms=100)
        await consumer.ensure_groups()
        await self.bus.register_worker(self.name, self.role, ttl_s=self.ttl_s, info={})
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._keep_registered)
            task_status.started()
            while True:
                entries = await consumer.read()
                for entry in entries:
                    command = COMMAND_ADAPTER.validate_json(entry.fields["command"])
                    if isinstance(command, StartParticipant):
                        if command.run_id not in self.started_runs:
                            self.started_runs.add(command.run_id)
                            self.starts[command.run_id] = command
                            tg.start_soon(self._participant, command)
                    elif isinstance(command, MembershipChanged):
                        self.memberships.append(command)  # (a simulated server ignores it)
                    else:
                        self.stops.append(command)
                        scope = self._scopes.pop((command.job_id, command.participant), None)
                        if scope is not None:
                            scope.cancel()
                            await self._emit(ParticipantStopped, command, reason=command.reason)
                await consumer.ack(entries)

    async def _keep_registered(self) -> None:
        while True:
            await anyio.sleep(self.ttl_s / 3)
            if self.mode != "silent" or not self.started_runs:
                await self.bus.register_worker(self.name, self.role, ttl_s=self.ttl_s, info={})

    async def _emit(self, kind: type[Any], cmd: StartParticipant | StopParticipant,
                    **fields: Any) -> None:
        event = signed(kind(event_id=uuid.uuid4().hex, job_id=cmd.job_id,
                            participant=cmd.participant, worker=self.name,
                            seq=next(self._seq), **fields), cmd.run_secret)
        self.sent.append(event)
        await self.bus.publish_event(event)

    async def _participant(self, cmd: StartParticipant) -> None:
        with anyio.CancelScope() as scope:
            self._scopes[(cmd.job_id, cmd.participant)] = scope
            await self._emit(ParticipantStarted, cmd)
            if self.mode == "silent":
                return
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._heartbeats, cmd)
                if self.mode == "hang":
                    await anyio.sleep_forever()
                for rnd in range(1, cmd.rounds + 1):
                    await anyio.sleep(self.step_s)
                    if cmd.role == "server":
                        await self._emit(RoundStarted, cmd, round=rnd)
                    await self._emit(RoundMetrics, cmd, round=rnd, metrics={"loss": 1.0 / rnd})
                    if self.mode == "fail":
                        await self._emit(ParticipantFailed, cmd, message="simulated failure")
                        tg.cancel_scope.cancel()
                        return
                if cmd.role == "server":
                    await anyio.sleep(self.step_s * 3)  # let clients finish first
                await self._emit(ParticipantFinished, cmd)
                tg.cancel_scope.cancel()
        self._scopes.pop((cmd.job_id, cmd.participant), None)

    async def _heartbeats(self, cmd: StartParticipant) -> None:
        while True:
            await anyio.sleep(cmd.heartbeat_interval_s)
            await self._emit(Heartbeat, cmd)


@asynccontextmanager
async def running(*starters: Callable[..., Any]) -> AsyncIterator[anyio.abc.TaskGroup]:
    """Start each ``run``-like callable with ``tg.start``; cancel them all on exit."""
    async with anyio.create_task_group() as tg:
        for start in starters:
            await tg.start(start)
        yield tg
        tg.cancel_scope.cancel()


@asynccontextmanager
async def daemon_running(store: JobStore, redis: Redis, options: DaemonOptions
                         ) -> AsyncIterator[Daemon]:
    """An in-process daemon; on exit it is stopped gracefully (drained)."""
    daemon = Daemon(store, redis, options)
    async with anyio.create_task_group() as tg:
        await tg.start(daemon.run)
        try:
            yield daemon
        finally:
            daemon.stop()


def workers_for(redis: Redis, keys: Keys, clients: int = 2, *, server: str = "srv",
                client_prefix: str = "cli", modes: dict[str, Mode] | None = None,
                step_s: float = 0.01) -> list[SimWorker]:
    modes = modes or {}
    names = [(server, "server"), *((f"{client_prefix}{i}", "client") for i in range(clients))]
    return [SimWorker(redis, keys, n, role, mode=modes.get(n, "ok"), step_s=step_s)  # type: ignore[arg-type]
            for n, role in names]


async def wait_for_job(store: JobStore, job_id: str, predicate: Callable[[Job], bool],
                       timeout_s: float = 15.0) -> Job:
    """Poll the store until the job satisfies ``predicate``; fail with its last state."""
    last: Job | None = None
    with anyio.move_on_after(timeout_s):
        while True:
            last = await store.find_by_id(job_id)
            if last is not None and predicate(last):
                return last
            await anyio.sleep(0.02)
    raise AssertionError(f"job {job_id} did not get there in {timeout_s}s; last: "
                         f"{None if last is None else (last.status, last.phase, last.error)}")


async def wait_finished(store: JobStore, job_id: str, timeout_s: float = 15.0) -> Job:
    return await wait_for_job(store, job_id, lambda j: j.status.is_terminal, timeout_s)


def assert_history_sane(job: Job) -> None:
    """No transition appears twice and FINISHED is last (invariants 2 and 3)."""
    pairs = [(h.from_status, h.to_status) for h in job.history]
    assert len(pairs) == len(set(pairs)), f"duplicated transition in {pairs}"
    terminal = [i for i, h in enumerate(job.history) if h.to_status.is_terminal]
    assert terminal in ([], [len(job.history) - 1]), f"FINISHED not last: {pairs}"
    if job.status.is_terminal:
        assert job.history[-1].to_status is job.status


async def rows(redis: Redis, stream: str) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """XRANGE - + with the client's byte replies, typed."""
    return cast("list[tuple[bytes, dict[bytes, bytes]]]", await redis.xrange(stream))


async def dead_letters(redis: Redis, keys: Keys) -> list[dict[str, str]]:
    return [{k.decode(): v.decode() for k, v in fields.items()}
            for _, fields in await rows(redis, keys.dead_letter)]


async def daemon_pending(redis: Redis, streams: Sequence[str], group: str = "daemon") -> int:
    total = 0
    for stream in streams:
        try:
            total += int((await redis.xpending(stream, group))["pending"])
        except Exception:
            continue
    return total


STATUSES_DONE = (JobStatus.FINISHED_SUCCESSFULLY, JobStatus.FINISHED_WITH_ERROR,
                 JobStatus.FINISHED_CANCELLED)
