"""The worker agent in-process, on the real Redis: lifecycle events, heartbeats, stops, refusals."""

from __future__ import annotations

import itertools
import json
from typing import Any

import anyio
import pytest

from orchestrator.bus import Redis
from orchestrator.bus.keys import Keys
from orchestrator.core.status import ErrorCode, Role
from orchestrator.storage import ObjectStore
from tests.agent.support import FakeDaemon, RegisterWorkload, new_id, running_agent
from workers.sdk import WorkloadContext, WorkloadResult


def assert_well_formed(events: list[object], worker: str) -> None:
    """Unique event ids, strictly growing seq, right worker."""
    ids = [e.event_id for e in events]  # type: ignore[attr-defined]
    assert len(set(ids)) == len(ids)
    seqs = [e.seq for e in events]  # type: ignore[attr-defined]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs
    assert {e.worker for e in events} == {worker}  # type: ignore[attr-defined]


async def test_noop_yields_finished_after_started_unless_the_end_caught_up(
    redis: Redis, keys: Keys, memory_store: ObjectStore, daemon: FakeDaemon
) -> None:
    async with running_agent(redis, keys, memory_store) as agent:
        start = await daemon.start(agent.config.name, workload="noop")
        finished = await daemon.wait_terminal(start)
    assert finished.type == "participant.finished"
    events = daemon.of(start.job_id)
    # (a start still queued when the end is queued is not sent: the end says it ran)
    assert [e.type for e in events] in (["participant.started", "participant.finished"],
                                        ["participant.finished"])
    assert_well_formed(events, agent.config.name)
    assert all(len(e.event_id) == 32 for e in events)
    # the command was acknowledged, the registration removed on shutdown
    pending = await redis.xpending(keys.commands(agent.config.name), keys.worker_group)
    assert pending["pending"] == 0
    assert await redis.exists(keys.worker_alive(agent.config.name)) == 0


async def test_registers_with_a_ttl(
    redis: Redis, keys: Keys, memory_store: ObjectStore
) -> None:
    async with running_agent(redis, keys, memory_store, capacity=3) as agent:
        raw = await redis.get(keys.worker_alive(agent.config.name))
        ttl_ms = await redis.pttl(keys.worker_alive(agent.config.name))
    assert raw is not None
    info = json.loads(raw)
    assert info["role"] == "server" and info["capacity"] == 3
    assert 0 < ttl_ms <= 3000


async def test_heartbeats_arrive_at_the_interval_with_the_round(
    redis: Redis, keys: Keys, memory_store: ObjectStore, daemon: FakeDaemon
) -> None:
    # inline: the count below bounds the beats of a 1.5 s run (a child process adds its start)
    async with running_agent(redis, keys, memory_store, isolation="inline") as agent:
        start = await daemon.start(
            agent.config.name, workload="sleep", rounds=3, config={"seconds": 1.5},
            heartbeat_interval_s=0.2,
        )
        await daemon.wait_terminal(start)
    events = daemon.of(start.job_id)
    assert_well_formed(events, agent.config.name)
    beats = [e for e in events if e.type == "participant.heartbeat"]
    assert 4 <= len(beats) <= 9, len(beats)
    gaps = [(b.at - a.at).total_seconds() for a, b in itertools.pairwise(beats)]
    assert all(0.1 < gap < 0.5 for gap in gaps), gaps
    assert beats[-1].round is not None and beats[-1].round >= 2
    types = [e.type for e in events]
    assert types[0] == "participant.started" and types[-1] == "participant.finished"
    assert types.count("round.started") == 3 and types.count("round.metrics") == 3
    metrics = [e for e in events if e.type == "round.metrics"]
    assert [m.round for m in metrics] == [1, 2, 3]


async def test_a_failing_workload_yields_failed_with_its_message(
    redis: Redis, keys: Keys, memory_store: ObjectStore, daemon: FakeDaemon
) -> None:
    async with running_agent(redis, keys, memory_store) as agent:
        start = await daemon.start(
            agent.config.name, workload="fail", rounds=2,
            config={"message": "boom at round 2", "at_round": 2},
        )
        failed = await daemon.wait_terminal(start)
        # the worker keeps working after a failure
        again = await daemon.start(agent.config.name, workload="noop")
        assert (await daemon.wait_terminal(again)).type == "participant.finished"
    assert failed.type == "participant.failed"
    assert failed.code == ErrorCode.WORKLOAD_FAILED
    assert failed.message == "boom at round 2"


async def test_a_stop_command_stops_the_workload(
    redis: Redis, keys: Keys, memory_store: ObjectStore, daemon: FakeDaemon
) -> None:
    async with running_agent(redis, keys, memory_store) as agent:
        start = await daemon.start(
            agent.config.name, workload="sleep", config={"seconds": 60},
            heartbeat_interval_s=0.1,
        )
        await daemon.wait_type(start, "participant.heartbeat")
        await daemon.stop(start, reason="job cancelled")
        with anyio.fail_after(5):
            stopped = await daemon.wait_terminal(start)
        assert stopped.type == "participant.stopped" and stopped.reason == "job cancelled"
        assert not agent.runs
        await anyio.sleep(0.4)
        await daemon.poll()
    assert daemon.types(start.job_id)[-1] == "participant.stopped"  # no heartbeat after it


async def test_a_workload_that_ignores_the_stop_is_cancelled_after_the_grace(
    redis: Redis, keys: Keys, memory_store: ObjectStore, daemon: FakeDaemon,
    register_workload: RegisterWorkload,
) -> None:
    async def stubborn(ctx: WorkloadContext) -> WorkloadResult:
        while True:  # never looks at ctx.cancelled()
            await anyio.sleep(0.05)

    name = register_workload(stubborn)
    async with running_agent(redis, keys, memory_store, stop_grace_s=0.3) as agent:
        start = await daemon.start(agent.config.name, workload=name)
        await daemon.wait_type(start, "participant.started")
        await daemon.stop(start, reason="enough")
        stopped = await daemon.wait_terminal(start, timeout_s=5)
    assert stopped.type == "participant.stopped" and stopped.reason == "enough"


async def test_a_repeated_start_runs_once(
    redis: Redis, keys: Keys, memory_store: ObjectStore, daemon: FakeDaemon
) -> None:
    async with running_agent(redis, keys, memory_store) as agent:
        start = await daemon.start(agent.config.name, workload="sleep", config={"seconds": 0.3})
        await daemon.send(start.model_copy(update={"command_id": new_id("cmd")}))
        await daemon.wait_terminal(start)
        await daemon.send(start)  # again after it ended
        marker = await daemon.start(agent.config.name, workload="noop")
        await daemon.wait_terminal(marker)
    assert daemon.types(start.job_id) == ["participant.started", "participant.finished"]


async def test_wrong_role_and_unknown_workload_are_refused_clearly(
    redis: Redis, keys: Keys, memory_store: ObjectStore, daemon: FakeDaemon
) -> None:
    async with running_agent(redis, keys, memory_store, role=Role.CLIENT) as agent:
        wrong_role = await daemon.start(agent.config.name, role=Role.SERVER)
        unknown = await daemon.start(
            agent.config.name, participant="client-0", role=Role.CLIENT, workload="no-such"
        )
        refused_role = await daemon.wait_terminal(wrong_role)
        refused_workload = await daemon.wait_terminal(unknown)
        ok = await daemon.start(agent.config.name, participant="client-0", role=Role.CLIENT)
        assert (await daemon.wait_terminal(ok)).type == "participant.finished"
    assert refused_role.type == "participant.failed"
    assert refused_role.code == ErrorCode.CANNOT_SCHEDULE
    assert "client worker" in refused_role.message and "server" in refused_role.message
    assert refused_workload.type == "participant.failed"
    assert refused_workload.code == ErrorCode.INVALID_SPEC
    assert "unknown workload 'no-such'" in refused_workload.message
    assert "fedavg" in refused_workload.message
    assert daemon.types(wrong_role.job_id) == ["participant.failed"]


async def test_bad_commands_are_dead_lettered_and_the_worker_goes_on(
    redis: Redis, keys: Keys, memory_store: ObjectStore, daemon: FakeDaemon
) -> None:
    async with running_agent(redis, keys, memory_store) as agent:
        stream = keys.commands(agent.config.name)
        await redis.xadd(stream, {"command": "{not json"})
        await redis.xadd(stream, {"something": "else"})
        other = await daemon.start(agent.config.name)  # sent to the right stream, ...
        await redis.xadd(stream, {"command": other.model_copy(
            update={"worker": "someone-else"}).model_dump_json()})  # ... and a forged one
        await daemon.wait_terminal(other)
        ok = await daemon.start(agent.config.name)
        await daemon.wait_terminal(ok)
        dead: Any = await redis.xrange(keys.dead_letter)
    reasons = [fields[b"reason"].decode() for _, fields in dead]
    assert len(reasons) == 3, reasons
    assert reasons[0].startswith("invalid command")
    assert "no 'command' field" in reasons[1]
    assert "someone-else" in reasons[2]


async def test_capacity_limits_concurrent_participants(
    redis: Redis, keys: Keys, memory_store: ObjectStore, daemon: FakeDaemon
) -> None:
    async with running_agent(redis, keys, memory_store, capacity=1) as agent:
        first = await daemon.start(agent.config.name, workload="sleep", config={"seconds": 0.6})
        second = await daemon.start(agent.config.name, workload="sleep", config={"seconds": 0.6})
        first_end = await daemon.wait_terminal(first)
        second_end = await daemon.wait_terminal(second)
        # both were accepted at once and beat while waiting; the second started (ran) only
        # once the first had ended
        starts = [daemon.of(s.job_id, types=["participant.started"])[0] for s in (first, second)]
    assert starts[1].at >= first_end.at
    assert (second_end.at - first_end.at).total_seconds() >= 0.5


async def test_a_stop_for_an_unknown_participant_says_it_is_not_running(
    redis: Redis, keys: Keys, memory_store: ObjectStore, daemon: FakeDaemon
) -> None:
    async with running_agent(redis, keys, memory_store) as agent:
        start = await daemon.start(agent.config.name)
        finished = await daemon.wait_terminal(start)
        await daemon.stop(start)  # ended here already: nothing more to say
        phantom = start.model_copy(update={"job_id": new_id("job")})
        await daemon.stop(phantom)
        stopped = await daemon.wait_terminal(phantom)
    assert finished.type == "participant.finished"
    assert daemon.types(start.job_id)[-1] == "participant.finished"  # nothing after its end
    assert stopped.type == "participant.stopped" and "not running" in stopped.reason


@pytest.mark.parametrize("raise_group", [False, True])
async def test_exception_text_is_the_message(
    redis: Redis, keys: Keys, memory_store: ObjectStore, daemon: FakeDaemon, raise_group: bool,
    register_workload: RegisterWorkload,
) -> None:
    async def raiser(ctx: WorkloadContext) -> WorkloadResult:
        error = ValueError("bad value 42")
        if raise_group:
            raise ExceptionGroup("inner", [error])
        raise error

    name = register_workload(raiser)
    async with running_agent(redis, keys, memory_store) as agent:
        start = await daemon.start(agent.config.name, workload=name)
        failed = await daemon.wait_terminal(start)
    assert failed.type == "participant.failed" and failed.message == "bad value 42"


async def test_a_stop_wakes_a_workload_waiting_for_a_message(
    redis: Redis, keys: Keys, memory_store: ObjectStore, daemon: FakeDaemon,
    register_workload: RegisterWorkload,
) -> None:
    async def waiter(ctx: WorkloadContext) -> WorkloadResult:
        await ctx.receive()  # no timeout: only a stop ends this
        return WorkloadResult()

    name = register_workload(waiter)
    async with running_agent(redis, keys, memory_store, stop_grace_s=30) as agent:
        start = await daemon.start(agent.config.name, workload=name)
        await daemon.wait_type(start, "participant.started")
        await anyio.sleep(0.2)
        await daemon.stop(start, reason="bye")
        with anyio.fail_after(3):  # far below the grace: the stop was cooperative
            stopped = await daemon.wait_terminal(start)
    assert stopped.type == "participant.stopped" and stopped.reason == "bye"
