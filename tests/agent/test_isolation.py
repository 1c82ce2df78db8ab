"""Participants in child processes: a workload that blocks its thread, crashes or ignores
SIGTERM cannot stop its worker, its heartbeats or the worker's next participants.

Real worker agents on the real Redis, real child processes (``python -m workers.child``); the
workloads are in :mod:`tests.agent.isolated_workloads`, importable by a child like any
installed workload. Heartbeat liveness is also checked through a real in-process daemon.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

import anyio
import numpy as np

from orchestrator.bus import Bus, Redis
from orchestrator.bus.keys import Keys
from orchestrator.core import ErrorCode, JobSpec, JobStatus, Role
from orchestrator.storage import ObjectStore, npz_to_arrays
from orchestrator.store import MemoryJobStore
from tests.agent import isolated_workloads as w
from tests.agent.support import FakeDaemon, RegisterWorkload, new_id, running_agent
from tests.daemon.harness import daemon_running, fast_options, wait_finished
from workers.registry import unregister, workload


def _max_gap_s(events: list[Any]) -> float:
    times = [e.at for e in events]
    return float(max((b - a).total_seconds() for a, b in itertools.pairwise(times)))


async def test_the_sdk_works_across_the_process_boundary(
    redis: Redis, keys: Keys, memory_store: ObjectStore, daemon: FakeDaemon,
    register_workload: RegisterWorkload,
) -> None:
    name = register_workload(w.sdk_tour)
    job_id, peers = new_id("job"), ["server", "client-0"]
    async with running_agent(redis, keys, memory_store) as server, \
            running_agent(redis, keys, memory_store, role=Role.CLIENT) as client:
        starts = [
            await daemon.start(server.config.name, job_id=job_id, workload=name, peers=peers),
            await daemon.start(client.config.name, job_id=job_id, workload=name, peers=peers,
                               participant="client-0", role=Role.CLIENT, client_index=0,
                               client_count=1),
        ]
        ends = [await daemon.wait_terminal(start, timeout_s=60) for start in starts]
    assert [e.type for e in ends] == ["participant.finished"] * 2, ends
    for start, end in zip(starts, ends, strict=True):
        saved = daemon.of(job_id, start.participant, ["checkpoint.saved"])
        assert sorted(s.round for s in saved) == [1, 2]
        big = next(s for s in saved if s.round == 1)  # 320 kB: crossed as a file
        weights = npz_to_arrays(await memory_store.get_data(big.key))["w"]
        assert np.array_equal(weights, np.arange(40_000, dtype=np.float64))
        assert end.final_checkpoint == next(s.key for s in saved if s.final)
        [metrics] = daemon.of(job_id, start.participant, ["round.metrics"])
        assert metrics.metrics["timed_out"] == 1.0
        log = (await memory_store.get_data(f"jobs/{job_id}/logs/{start.participant}.log")
               ).decode()
        assert "refused with WorkloadError PeerMessageError" in log
        pid = int(log.split("pid ", 1)[1].split(";", 1)[0])
        assert pid != os.getpid()  # it ran in a process of its own


async def test_a_cpu_loop_in_the_workload_does_not_stop_the_heartbeats(
    redis: Redis, keys: Keys, memory_store: ObjectStore, daemon: FakeDaemon,
    register_workload: RegisterWorkload,
) -> None:
    name = register_workload(w.cpu_block)
    beats: dict[str, list[Any]] = {}
    for isolation in ("process", "inline"):
        async with running_agent(redis, keys, memory_store, isolation=isolation) as agent:
            start = await daemon.start(agent.config.name, workload=name,
                                       config={"seconds": 2.0}, heartbeat_interval_s=0.2)
            end = await daemon.wait_terminal(start, timeout_s=30)
        assert end.type == "participant.finished"
        beats[isolation] = daemon.of(start.job_id, types=["participant.heartbeat"])
    # in its own process the loop leaves the agent beating all along; inline it holds the
    # agent's event loop, and not one heartbeat is made while it runs
    assert len(beats["process"]) >= 8, len(beats["process"])
    assert _max_gap_s(beats["process"]) < 1.0
    assert beats["inline"] == []


async def test_a_job_whose_workload_blocks_for_three_heartbeat_timeouts_succeeds(
    redis: Redis, keys: Keys, memory_store: ObjectStore, register_workload: RegisterWorkload,
) -> None:
    """(``BLOCK_TEST_S=30 pytest -k three_heartbeat`` blocks for 30 s instead.)"""
    name = register_workload(w.cpu_block)
    job_id, heartbeat_s = new_id("block"), 1.0
    seconds = float(os.environ.get("BLOCK_TEST_S", 3.5 * heartbeat_s))
    limit_s = max(60.0, seconds + 30)
    spec = JobSpec.model_validate({
        "job_id": job_id, "workload": name,
        "server": {"worker": f"{job_id}-srv", "config": {"seconds": seconds}},
        "timeouts": {"heartbeat_s": heartbeat_s, "start_s": 20, "round_s": limit_s,
                     "job_s": limit_s},
    })
    jobs = MemoryJobStore()
    async with daemon_running(jobs, redis, fast_options(keys.namespace)), \
            running_agent(redis, keys, memory_store, name=f"{job_id}-srv"):
        await Bus(redis, keys).submit(spec.model_dump_json())
        job = await wait_finished(jobs, job_id, timeout_s=limit_s)
    assert job.status is JobStatus.FINISHED_SUCCESSFULLY, job.error


async def test_a_workload_that_exits_fails_with_its_exit_code_and_the_worker_goes_on(
    redis: Redis, keys: Keys, memory_store: ObjectStore, daemon: FakeDaemon,
    register_workload: RegisterWorkload,
) -> None:
    crash, chatty = register_workload(w.exit_3), register_workload(w.chatty)
    async with running_agent(redis, keys, memory_store) as agent:
        start = await daemon.start(agent.config.name, workload=crash)
        failed = await daemon.wait_terminal(start, timeout_s=30)
        after = await daemon.start(agent.config.name, workload=chatty)
        finished = await daemon.wait_terminal(after, timeout_s=30)
    assert failed.type == "participant.failed" and failed.code is ErrorCode.WORKLOAD_FAILED
    assert failed.message == "the workload's process exited with code 3"
    assert finished.type == "participant.finished"
    log = (await memory_store.get_data(f"jobs/{start.job_id}/logs/server.log")).decode()
    assert "about to exit with code 3" in log
    assert "[the workload's process exited with code 3]" in log


async def test_a_workload_that_ignores_sigterm_is_killed_after_the_grace(
    redis: Redis, keys: Keys, memory_store: ObjectStore, daemon: FakeDaemon,
    register_workload: RegisterWorkload, tmp_path: Path,
) -> None:
    name = register_workload(w.ignore_sigterm)
    pid_file = tmp_path / "pid"
    async with running_agent(redis, keys, memory_store, stop_grace_s=1.0) as agent:
        start = await daemon.start(agent.config.name, workload=name,
                                   config={"pid_file": str(pid_file)})
        with anyio.fail_after(30):
            while not pid_file.exists() or not pid_file.read_text():
                await anyio.sleep(0.05)
        pid = int(pid_file.read_text())
        await daemon.stop(start, reason="enough")
        stopped = await daemon.wait_terminal(start, timeout_s=20)
    assert stopped.type == "participant.stopped"
    assert stopped.reason == "enough (the workload's process was killed after the stop grace)"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        pass
    else:
        raise AssertionError(f"the workload's process {pid} is still alive")
    log = (await memory_store.get_data(f"jobs/{start.job_id}/logs/server.log")).decode()
    assert "ignoring SIGTERM" in log and "[the workload's process was killed (SIGKILL)]" in log


async def test_a_cooperative_workload_stops_on_sigterm_within_the_grace(
    redis: Redis, keys: Keys, memory_store: ObjectStore, daemon: FakeDaemon,
    register_workload: RegisterWorkload,
) -> None:
    name = register_workload(w.chatty)
    async with running_agent(redis, keys, memory_store, stop_grace_s=30) as agent:
        start = await daemon.start(agent.config.name, workload=name,
                                   config={"ticks": 1000, "tick_s": 0.05})
        await daemon.wait_type(start, "participant.started")
        await anyio.sleep(1.0)
        await daemon.stop(start, reason="bye")
        with anyio.fail_after(15):  # far below the grace: it stopped at its checkpoint_cancel
            stopped = await daemon.wait_terminal(start)
    assert stopped.type == "participant.stopped" and stopped.reason == "bye"
    log = (await memory_store.get_data(f"jobs/{start.job_id}/logs/server.log")).decode()
    assert "tick 0" in log and "SIGKILL" not in log


async def test_inline_isolation_runs_the_workload_in_the_worker(
    redis: Redis, keys: Keys, memory_store: ObjectStore, daemon: FakeDaemon,
    register_workload: RegisterWorkload,
) -> None:
    name = register_workload(w.chatty)
    async with running_agent(redis, keys, memory_store, isolation="inline") as agent:
        start = await daemon.start(agent.config.name, workload=name)
        finished = await daemon.wait_terminal(start, timeout_s=30)
    assert finished.type == "participant.finished"
    assert not await memory_store.exists(f"jobs/{start.job_id}/logs/server.log")
    assert not await redis.exists(keys.logs(start.job_id))


async def test_a_light_workload_runs_inline(
    redis: Redis, keys: Keys, memory_store: ObjectStore, daemon: FakeDaemon,
) -> None:
    name = new_id("light")
    workload(name, light=True)(w.chatty)
    try:
        async with running_agent(redis, keys, memory_store) as agent:  # isolation="process"
            start = await daemon.start(agent.config.name, workload=name)
            noop = await daemon.start(agent.config.name, workload="noop")
            ends = [await daemon.wait_terminal(s, timeout_s=30) for s in (start, noop)]
    finally:
        unregister(name)
    assert [e.type for e in ends] == ["participant.finished"] * 2
    for s in (start, noop):  # no child ran: nothing was captured
        assert not await redis.exists(keys.logs(s.job_id))
    assert not await memory_store.exists(f"jobs/{start.job_id}/logs/server.log")
