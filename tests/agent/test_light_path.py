"""The worker's light per-participant path, on the real Redis: one XACK per read, one heartbeat
task for every participant, an uploader only for a participant that saves a checkpoint."""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterator

import anyio
import pytest

from orchestrator.bus import Redis
from orchestrator.bus.keys import Keys
from orchestrator.storage import CheckpointUploader, ObjectStore
from tests.agent.support import (
    FakeDaemon,
    RegisterWorkload,
    command_calls,
    new_id,
    running_agent,
    start_command,
)
from workers.sdk import WorkloadContext, WorkloadResult


def task_names() -> list[str]:
    return [task.name for task in anyio.get_running_tasks()]


async def wait_acknowledged(redis: Redis, keys: Keys, worker: str) -> None:
    """Until the worker's command group has no entry pending (the XACK comes after the read's
    last start was handled, so its events may be out before it)."""
    with anyio.fail_after(5):
        while (await redis.xpending(keys.commands(worker), keys.worker_group))["pending"]:
            await anyio.sleep(0.02)


async def test_a_read_of_many_starts_is_acknowledged_with_one_xack(
    redis: Redis, keys: Keys, memory_store: ObjectStore, daemon: FakeDaemon
) -> None:
    name = new_id("server")
    waiting = [await daemon.start(name) for _ in range(5)]  # there before the worker reads
    xacks_before = await command_calls(redis, "XACK")
    async with running_agent(redis, keys, memory_store, name=name) as agent:
        for start in waiting:
            assert (await daemon.wait_terminal(start)).type == "participant.finished"
        await wait_acknowledged(redis, keys, name)
        assert await command_calls(redis, "XACK") - xacks_before == 1

        # while the worker blocks in XREADGROUP: four commands land at once, one read, one XACK
        xacks_before = await command_calls(redis, "XACK")
        together = [start_command(agent.config.name) for _ in range(4)]
        await daemon.send_at_once(together)
        for start in together:
            assert (await daemon.wait_terminal(start)).type == "participant.finished"
        await wait_acknowledged(redis, keys, name)
        assert await command_calls(redis, "XACK") - xacks_before == 1
    for start in [*waiting, *together]:  # (a start the end caught up with is not sent)
        assert daemon.types(start.job_id) in (["participant.started", "participant.finished"],
                                              ["participant.finished"])


async def test_one_heartbeat_task_beats_for_every_participant_at_its_interval(
    redis: Redis, keys: Keys, memory_store: ObjectStore, daemon: FakeDaemon,
    register_workload: RegisterWorkload,
) -> None:
    release = anyio.Event()

    async def park(ctx: WorkloadContext) -> WorkloadResult:
        await release.wait()
        return WorkloadResult()

    name = register_workload(park)
    intervals = [0.1, 0.15, 0.2, 0.3, 0.4]
    async with running_agent(redis, keys, memory_store, capacity=len(intervals)) as agent:
        await anyio.sleep(0.1)
        idle_tasks = len(anyio.get_running_tasks())
        starts = [
            await daemon.start(agent.config.name, workload=name, heartbeat_interval_s=interval)
            for interval in intervals
        ]
        for start in starts:
            await daemon.wait_type(start, "participant.started")
        await anyio.sleep(0.1)
        names = task_names()
        busy_tasks = len(names)
        await anyio.sleep(1.5)
        release.set()
        for start in starts:
            assert (await daemon.wait_terminal(start)).type == "participant.finished"
    # one task per participant (no heartbeat task of its own), one heartbeat task in all
    assert busy_tasks - idle_tasks == len(intervals), names
    assert names.count("heartbeats") == 1, names
    for start in starts:
        assert sum(start.job_id in n for n in names) == 1, names
    for start, interval in zip(starts, intervals, strict=True):
        events = daemon.of(start.job_id)
        beats = [e for e in events if e.type == "participant.heartbeat"]
        assert events[-1].type == "participant.finished"
        assert int(1.6 / interval) - 2 <= len(beats) <= 1.8 / interval + 1, (interval, beats)
        gaps = [(b.at - a.at).total_seconds() for a, b in itertools.pairwise(beats)]
        assert abs(statistics.median(gaps) - interval) < 0.3 * interval, (interval, gaps)


class CountingUploader(CheckpointUploader):
    created = 0

    def __init__(self, *args: object, **kwargs: object) -> None:
        CountingUploader.created += 1
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def counting_uploaders(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[CountingUploader]]:
    CountingUploader.created = 0
    monkeypatch.setattr("workers.participant.CheckpointUploader", CountingUploader)
    yield CountingUploader


async def test_an_uploader_only_for_a_participant_that_saves(
    redis: Redis, keys: Keys, memory_store: ObjectStore, daemon: FakeDaemon,
    register_workload: RegisterWorkload, counting_uploaders: type[CountingUploader],
) -> None:
    release = anyio.Event()

    async def maybe_save(ctx: WorkloadContext) -> WorkloadResult:
        final = None
        if ctx.config.get("save"):
            final = await ctx.save_checkpoint(1, b"weights", final=True, ext="bin")
        await release.wait()
        return WorkloadResult(final_checkpoint=final)

    name = register_workload(maybe_save)
    async with running_agent(redis, keys, memory_store) as agent:
        quiet = await daemon.start(agent.config.name, workload=name)
        saver = await daemon.start(agent.config.name, workload=name, config={"save": True})
        await daemon.wait_type(quiet, "participant.started")
        await daemon.wait_type(saver, "checkpoint.saved")
        names = task_names()
        runs = {run.command.job_id: run for run in agent.runs.values()}
        quiet_uploads, saver_uploads = runs[quiet.job_id].uploads, runs[saver.job_id].uploads
        release.set()
        quiet_end = await daemon.wait_terminal(quiet)
        saver_end = await daemon.wait_terminal(saver)
        await anyio.sleep(0.05)
        names_after = task_names()
    assert counting_uploaders.created == 1
    assert quiet_uploads is not None and not quiet_uploads.started
    assert saver_uploads is not None and saver_uploads.started
    assert not any(n.startswith("uploads ") and quiet.job_id in n for n in names), names
    assert sum(n.startswith("uploads ") and saver.job_id in n for n in names) == 1, names
    assert not any(n.startswith("uploads ") for n in names_after), names_after

    assert quiet_end.type == "participant.finished" and quiet_end.final_checkpoint is None
    assert daemon.types(quiet.job_id) == ["participant.started", "participant.finished"]
    assert daemon.types(saver.job_id) == [
        "participant.started", "checkpoint.saved", "participant.finished"
    ]
    saved = daemon.of(saver.job_id, types=["checkpoint.saved"])[0]
    assert saver_end.type == "participant.finished"
    assert saver_end.final_checkpoint == saved.key
    assert await memory_store.get_data(saved.key) == b"weights"


async def test_an_ended_run_is_freed_without_the_garbage_collector(
    redis: Redis, keys: Keys, memory_store: ObjectStore, daemon: FakeDaemon,
    register_workload: RegisterWorkload,
) -> None:
    """A run's context and uploads refer back to it; it lets them go when it ends, so a worker
    ending thousands of runs does not leave them for the cyclic collector to find."""
    import gc  # noqa: PLC0415
    import weakref  # noqa: PLC0415

    contexts: list[weakref.ref[WorkloadContext]] = []

    async def remember(ctx: WorkloadContext) -> WorkloadResult:
        contexts.append(weakref.ref(ctx))
        return WorkloadResult()

    name = register_workload(remember)
    async with running_agent(redis, keys, memory_store, capacity=2) as agent:
        gc.collect()
        gc.disable()
        try:
            starts = [await daemon.start(agent.config.name, workload=name) for _ in range(6)]
            for start in starts:
                assert (await daemon.wait_terminal(start)).type == "participant.finished"
            with anyio.fail_after(5):
                while agent.runs or any(ref() is not None for ref in contexts):
                    await anyio.sleep(0.02)
        finally:
            gc.enable()
    assert len(contexts) == 6
