"""Test-side stand-ins for the daemon: start worker agents, send them commands, read events."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
from pydantic import TypeAdapter

from orchestrator.bus import Bus, Redis
from orchestrator.bus.keys import Keys
from orchestrator.core.commands import StartParticipant, StopParticipant
from orchestrator.core.events import EVENT_ADAPTER, ParticipantEvent
from orchestrator.core.status import Role
from orchestrator.storage import ObjectStore
from workers.agent import AgentConfig, WorkerAgent
from workers.registry import WorkloadFn

RegisterWorkload = Callable[[WorkloadFn], str]
"""Registers a throwaway workload under a unique name and returns the name (a fixture)."""

_PARTICIPANT_EVENT: TypeAdapter[ParticipantEvent] = TypeAdapter(ParticipantEvent)
TERMINAL = ("participant.finished", "participant.failed", "participant.stopped")


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def start_command(
    worker: str,
    *,
    job_id: str | None = None,
    participant: str = "server",
    role: Role = Role.SERVER,
    workload: str = "noop",
    rounds: int = 1,
    config: dict[str, Any] | None = None,
    peers: Sequence[str] | None = None,
    run_id: str | None = None,
    heartbeat_interval_s: float = 5.0,
    client_index: int | None = None,
    client_count: int = 0,
    min_clients: int = 0,
) -> StartParticipant:
    """A start command for ``worker`` (unique ids unless given)."""
    return StartParticipant(
        command_id=new_id("cmd"),
        job_id=job_id or new_id("job"),
        participant=participant,
        run_id=run_id or uuid.uuid4().hex,
        role=role,
        worker=worker,
        workload=workload,
        rounds=rounds,
        config=config or {},
        peers=list(peers or [participant]),
        client_index=client_index,
        client_count=client_count,
        min_clients=min_clients,
        heartbeat_interval_s=heartbeat_interval_s,
    )


class FakeDaemon:
    """Publishes commands straight onto worker command streams and collects every event."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self.bus = Bus(redis, keys)
        self.events: list[Any] = []
        self._cursors = dict.fromkeys(keys.all_event_streams(), "0-0")

    async def start(self, worker: str, **fields: Any) -> StartParticipant:
        """Send a start command (see :func:`start_command`) and return it."""
        command = start_command(worker, **fields)
        await self.send(command)
        return command

    async def stop(self, start: StartParticipant, reason: str = "cancelled by test") -> None:
        await self.send(
            StopParticipant(
                command_id=new_id("cmd"),
                job_id=start.job_id,
                participant=start.participant,
                worker=start.worker,
                reason=reason,
            )
        )

    async def send(self, command: StartParticipant | StopParticipant) -> None:
        await self.bus.send_commands([command])

    async def send_at_once(self, commands: Sequence[StartParticipant | StopParticipant]) -> None:
        """XADD ``commands`` in one MULTI/EXEC, so a blocked reader gets them in one read."""
        async with self.redis.pipeline(transaction=True) as pipe:
            for command in commands:
                pipe.xadd(self.keys.commands(command.worker),
                          {"command": command.model_dump_json()})
            await pipe.execute()

    async def poll(self) -> None:
        """Read every new event of every shard (non-blocking)."""
        reply: Any = await self.redis.xread(self._cursors, count=1000)  # type: ignore[arg-type]
        for stream, entries in reply or []:
            name = stream.decode() if isinstance(stream, bytes) else stream
            for entry_id, fields in entries:
                self._cursors[name] = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                self.events.append(EVENT_ADAPTER.validate_json(fields[b"event"]))

    def of(
        self, job_id: str, participant: str | None = None, types: Sequence[str] | None = None
    ) -> list[Any]:
        return [
            e for e in self.events
            if e.job_id == job_id
            and (participant is None or getattr(e, "participant", None) == participant)
            and (types is None or e.type in types)
        ]

    def types(self, job_id: str, participant: str | None = None) -> list[str]:
        return [e.type for e in self.of(job_id, participant)]

    async def wait_for(
        self, predicate: Callable[[], bool], *, timeout_s: float = 20.0, what: str = "events"
    ) -> None:
        with anyio.move_on_after(timeout_s):
            while True:
                await self.poll()
                if predicate():
                    return
                await anyio.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; events: {self.summary()}")

    async def wait_terminal(
        self, start: StartParticipant, *, timeout_s: float = 20.0
    ) -> Any:
        """Wait for the participant's terminal event and return it."""
        await self.wait_for(
            lambda: bool(self.of(start.job_id, start.participant, TERMINAL)),
            timeout_s=timeout_s,
            what=f"{start.participant} of {start.job_id} to end",
        )
        return self.of(start.job_id, start.participant, TERMINAL)[0]

    async def wait_type(
        self, start: StartParticipant, type_: str, *, count: int = 1, timeout_s: float = 20.0
    ) -> list[Any]:
        await self.wait_for(
            lambda: len(self.of(start.job_id, start.participant, [type_])) >= count,
            timeout_s=timeout_s,
            what=f"{count} x {type_} from {start.participant}",
        )
        return self.of(start.job_id, start.participant, [type_])

    def summary(self) -> list[str]:
        return [f"{e.type}:{getattr(e, 'participant', '-')}" for e in self.events[-40:]]


async def command_calls(redis: Redis, command: str) -> int:
    """How many times the Redis server ran ``command`` so far (INFO commandstats)."""
    stats: dict[str, Any] = await redis.info("commandstats")
    return int(stats.get(f"cmdstat_{command.lower()}", {}).get("calls", 0))


@asynccontextmanager
async def running_agent(
    redis: Redis,
    keys: Keys,
    store: ObjectStore,
    *,
    name: str | None = None,
    role: Role = Role.SERVER,
    **options: Any,
) -> AsyncIterator[WorkerAgent]:
    """Run a worker agent as a task; shut it down gracefully on exit."""
    config = AgentConfig(name=name or new_id(role.value), role=role, ttl_s=3.0, block_ms=200,
                         **options)
    agent = WorkerAgent(config, redis=redis, keys=keys, store=store)
    async with anyio.create_task_group() as tg:
        await tg.start(agent.run)
        try:
            yield agent
        finally:
            agent.shutdown()
