"""The floor under the light-load latency: three bare Redis Streams hops between processes.

A job's path from submission to FINISHED crosses three process hops: the submission to the
daemon, the start command to the worker, the worker's ``participant.finished`` back to the
daemon. This script times the same three hops with nothing done at each (redis.asyncio,
XREADGROUP BLOCK, one pipelined XADD + XACK per hop, as the daemon's commit and the worker's
outbox do), at the light load of ``bench_e2e.py`` (25 submissions a second): what no amount of
work removed from the daemon or the worker can go below on this machine.

    python bench/bench_hops.py                  # 25/s for 10 s, three runs
    python bench/bench_hops.py --rate 1000      # busy processes: no wake-up from idle

It starts its own Valkey on 127.0.0.1 (``orchestrator.devstack.servers``) and two relay
processes (this script with ``--role``), and stops all three by their PID.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from e2e_support import percentile  # (this script's folder is on sys.path)

GROUP = "g"


async def _groups(r: aioredis.Redis, *streams: str) -> None:
    for stream in streams:
        with contextlib.suppress(aioredis.ResponseError):  # (it exists)
            await r.xgroup_create(stream, GROUP, id="0", mkstream=True)


async def relay(url: str, role: str) -> None:
    """``daemon``: s1 -> s2 (a submission becomes a start command), s3 -> done (the end is
    read); ``worker``: s2 -> s3 (a start command becomes a finished event)."""
    r = aioredis.Redis.from_url(url)
    inputs = {"daemon": ("s1", "s3"), "worker": ("s2",)}[role]
    await _groups(r, *inputs, "done")
    while True:
        reply: Any = await r.xreadgroup(GROUP, role, dict.fromkeys(inputs, ">"), count=100,
                                   block=5000)
        for stream, entries in reply or []:
            out = {"s1": "s2", "s2": "s3", "s3": "done"}[stream.decode()]
            async with r.pipeline(transaction=False) as pipe:
                for _id, fields in entries:
                    pipe.xadd(out, {"t": fields[b"t"], "at": repr(time.time())})
                pipe.xack(stream, GROUP, *[entry_id for entry_id, _ in entries])
                await pipe.execute()
            if any(fields[b"t"] == b"end" for _, fields in entries) and out in ("s3", "done"):
                return


async def submit(url: str, rate: float, seconds: float) -> list[float]:
    """XADD to s1 at ``rate`` for ``seconds``, one at a time; the three-hop latencies (ms)."""
    r = aioredis.Redis.from_url(url)
    await _groups(r, "s1", "done")
    await asyncio.sleep(0.5)  # the relays block in XREADGROUP
    sent: dict[bytes, float] = {}
    count = int(rate * seconds)
    for i in range(count):
        key = str(i).encode()
        sent[key] = time.time()
        await r.xadd("s1", {"t": key})
        await asyncio.sleep(1 / rate)
    await r.xadd("s1", {"t": "end"})
    latencies: list[float] = []
    last: Any = "0"
    while len(latencies) < count:
        reply: Any = await r.xread({"done": last}, count=1000, block=5000)
        if not reply:
            break
        for entry_id, fields in reply[0][1]:
            last = entry_id
            if fields[b"t"] in sent:
                latencies.append((float(fields[b"at"]) - sent[fields[b"t"]]) * 1000)
    await r.aclose()
    return latencies


async def _flush(url: str) -> None:
    r = aioredis.Redis.from_url(url)
    await r.flushall()
    await r.aclose()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=25.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--role", choices=["daemon", "worker"], help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.role:
        asyncio.run(relay(args.url, args.role))
        return 0
    from orchestrator.devstack.servers import start_redis  # noqa: PLC0415

    server = start_redis(Path(tempfile.mkdtemp(prefix="bench-hops-")))
    p50s = []
    try:
        for run in range(1, args.repeat + 1):
            asyncio.run(_flush(server.url))
            relays = [subprocess.Popen([sys.executable, __file__, "--role", role,
                                        "--url", server.url]) for role in ("daemon", "worker")]
            try:
                lat = asyncio.run(submit(server.url, args.rate, args.seconds))
            finally:
                for proc in relays:
                    try:
                        proc.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
            p50s.append(statistics.median(lat))
            print(f"[{run}/{args.repeat}] three bare hops at {args.rate:g}/s: {len(lat)} jobs, "
                  f"p50 {statistics.median(lat):.2f} / p99 {percentile(lat, 0.99):.2f} ms",
                  flush=True)
    finally:
        server.stop()
    print(f"median of the p50s: {statistics.median(p50s):.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
