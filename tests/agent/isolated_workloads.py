"""Workloads of the isolation tests, at module level so that a child process imports them
(``tests.agent.isolated_workloads:NAME``) the way it imports any installed workload."""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from pathlib import Path

import anyio
import numpy as np

from orchestrator.errors import WorkloadError
from orchestrator.storage import arrays_to_npz, npz_to_arrays
from workers.sdk import WorkloadContext, WorkloadResult


async def cpu_block(ctx: WorkloadContext) -> WorkloadResult:
    """Hold the thread (and so the event loop) in a CPU loop for ``config.seconds``."""
    seconds = float(ctx.config.get("seconds", 2.0))
    print(f"blocking for {seconds}s", flush=True)
    until = time.monotonic() + seconds
    spins = 0
    while time.monotonic() < until:
        spins += 1
    return WorkloadResult(summary={"spins": float(spins)})


async def exit_3(ctx: WorkloadContext) -> WorkloadResult:
    """Die at once, as a crashing C extension would, with exit code 3."""
    print("about to exit with code 3", flush=True)
    os._exit(3)


async def ignore_sigterm(ctx: WorkloadContext) -> WorkloadResult:
    """Ignore SIGTERM and block: only SIGKILL ends it. Writes its pid to ``config.pid_file``."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    Path(str(ctx.config["pid_file"])).write_text(str(os.getpid()))
    print("ignoring SIGTERM", flush=True)
    time.sleep(120)
    return WorkloadResult()


async def chatty(ctx: WorkloadContext) -> WorkloadResult:
    """Print, write to stderr and log; then ``config.lines`` numbered lines, and one ``tick N``
    line every ``config.tick_s`` for ``config.ticks`` ticks."""
    print(f"hello from print in {ctx.participant}")
    print("a line on stderr", file=sys.stderr)
    logging.getLogger("chatty").warning("a line from logging")
    ctx.log.info("a line from ctx.log", participant_seen=ctx.participant)
    for i in range(int(ctx.config.get("lines", 0))):
        print(f"line {i}")
    for i in range(int(ctx.config.get("ticks", 0))):
        print(f"tick {i}", flush=True)
        await anyio.sleep(float(ctx.config.get("tick_s", 0.2)))
        await ctx.checkpoint_cancel()
    print("chatty done")
    return WorkloadResult(summary={"done": 1.0})


async def sdk_tour(ctx: WorkloadContext) -> WorkloadResult:
    """Every SDK call across the process boundary: metrics, a large and a small checkpoint
    (file and inline bytes), blobs, a message to itself, errors raised back as SDK types."""
    await ctx.round_started(1)
    weights = np.arange(40_000, dtype=np.float64)  # 320 kB: travels as a file
    await ctx.save_checkpoint(1, arrays_to_npz({"w": weights}))
    big = await ctx.put_blob("big.npz", arrays_to_npz({"w": weights}))
    small = await ctx.put_blob("small.bin", b"tiny")
    assert await ctx.get_blob(small) == b"tiny"
    loaded = npz_to_arrays(await ctx.get_blob(big))
    assert np.array_equal(loaded["w"], weights)
    other = next(p for p in ctx.peers if p != ctx.participant)
    await ctx.send(other, {"hello": [1, 2, 3], "from": ctx.participant})
    message = await ctx.receive(timeout_s=20)
    assert message.sender == other and message.body == {"hello": [1, 2, 3], "from": other}
    try:
        await ctx.receive(timeout_s=0.2)
    except TimeoutError:
        timed_out = 1.0
    else:
        timed_out = 0.0
    refused = []
    for bad in (ctx.report_metrics(1, {"bad": float("nan")}), ctx.send("nobody", {})):
        try:
            await bad
        except Exception as exc:
            refused.append(type(exc).__name__)
    await ctx.report_metrics(1, {"timed_out": timed_out, "loaded": float(loaded["w"].sum())})
    final = await ctx.save_checkpoint(2, arrays_to_npz({"w": weights[:3]}), final=True)
    print(f"pid {os.getpid()}; refused with {' '.join(refused)}")
    return WorkloadResult(final_checkpoint=final, summary={"timed_out": timed_out})


async def loud_failure(ctx: WorkloadContext) -> WorkloadResult:
    """Clients print a few lines and fail; the server waits (cooperatively) to be stopped."""
    if ctx.client_index is not None:
        for i in range(10):
            print(f"{ctx.participant} step {i}")
        print("about to fail: bad data in the shard", file=sys.stderr)
        raise WorkloadError("bad data in the shard")
    while True:
        await anyio.sleep(0.05)
        await ctx.checkpoint_cancel()
