"""Benchmark: raw Redis Streams transport vs the daemon's event application, in one run.

    python bench/bench_daemon.py [--jobs 1000] [--events-per-job 20] [--batch 200]
                                 [--repeat 5] [--wire-jobs 300] [--no-wire] [--profile FILE]

Prints (all on 127.0.0.1, servers started here and stopped at the end):

1. raw transport: a producer *process* XADDs pipelined (100 per round trip) while this process
   reads XREADGROUP COUNT n and XACKs each batch (performance.md's ceiling), events/s; also
   the consumer alone on a pre-loaded stream;
2. the daemon's event application (the whole daemon: read → parse → ``apply_events``
   (one load, one records upsert, one bulk CAS) → one ``execute_batch`` commit of commands,
   updates and XACK) over
   ``jobs x events-per-job`` heartbeat and metrics events pre-loaded on the event shards,
   with the in-memory job store, timed from the first read until all are acknowledged;
3. their ratio, and job-store round trips per event (``store.round_trips``);
   1-3 are measured ``--repeat`` times, interleaved, and the medians are compared (a single
   raw-transport sample moves by 1.5x on a shared 2-core machine);
4. the CPU cost of one commit's worth of watcher updates (240 XADDs, as in a batch of this
   traffic) through redis-py's pipeline and through ``execute_batch`` (the daemon's commit);
5. the same daemon run against the Mongo wire stand-in (PyMongo async driver, separate
   process): rate and round trips per event.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from orchestrator.bus import Bus, Redis, connect_redis, update_payload
from orchestrator.bus.keys import Keys
from orchestrator.bus.packing import execute_batch
from orchestrator.core import (
    Event,
    Heartbeat,
    Job,
    JobDispatched,
    JobSpec,
    RoundMetrics,
    new_job,
)
from orchestrator.core.auth import run_secret, sign_event
from orchestrator.daemon import Daemon, DaemonOptions
from orchestrator.daemon.apply import apply_events
from orchestrator.daemon.tuning import tune_gc
from orchestrator.devstack.servers import start_mongo, start_redis
from orchestrator.store import JobStore, MemoryJobStore, connect_mongo

PIPELINE = 100
SAMPLE_EVENT = Heartbeat(event_id="e" * 32, job_id="j" * 32, participant="client-1",
                         worker="worker-1", seq=12345).model_dump_json()


# --- raw transport -------------------------------------------------------------------------------


async def _produce(url: str, stream: str, count: int) -> None:
    redis = connect_redis(url)
    sent = 0
    while sent < count:
        pipe = redis.pipeline(transaction=False)
        for _ in range(min(PIPELINE, count - sent)):
            pipe.xadd(stream, {b"event": SAMPLE_EVENT})
        sent += len(await pipe.execute())
    await redis.aclose()


async def _consume(redis: Redis, stream: str, count: int, batch: int) -> float:
    got = 0
    t0 = 0.0
    while got < count:
        reply = await redis.xreadgroup("raw", "c", {stream: ">"}, count=batch, block=1000)
        if not reply:
            continue
        if not t0:
            t0 = time.perf_counter()
        ids = [i for _, entries in reply for i, _ in entries]  # type: ignore[union-attr,str-unpack]
        await redis.xack(stream, "raw", *ids)
        got += len(ids)
    return count / (time.perf_counter() - t0)


async def raw_transport(url: str, count: int, batch: int) -> tuple[float, float]:
    """(producer process → this consumer, consumer alone on a pre-loaded stream), events/s."""
    redis = connect_redis(url)
    stream = f"bench-raw-{uuid.uuid4().hex[:6]}"
    await redis.xgroup_create(stream, "raw", id="0", mkstream=True)
    producer = await anyio.open_process(
        [sys.executable, __file__, "--produce", url, stream, str(count)])
    try:
        concurrent = await _consume(redis, stream, count, batch)
    finally:
        await producer.wait()
    stream2 = stream + "-pre"
    await redis.xgroup_create(stream2, "raw", id="0", mkstream=True)
    await _produce(url, stream2, count)
    preloaded = await _consume(redis, stream2, count, batch)
    await redis.delete(stream, stream2)
    await redis.aclose()
    return concurrent, preloaded


async def commit_cpu(url: str, updates: int = 120, rounds: int = 50) -> tuple[float, float]:
    """CPU µs for ``2 * updates`` update XADDs: (redis-py pipeline, ``execute_batch``), best
    of ``rounds`` each, alternating."""
    redis = connect_redis(url)
    job = new_job("bench-commit", bench_spec("bench-commit"), datetime.now(UTC))
    payload = update_payload(job, "participant.heartbeat")
    stream = f"bench-commit-{uuid.uuid4().hex[:6]}"
    # As ``Bus.queue_updates``: one XADD to the stream of every job, one to the job's own.
    commands = [("XADD", f"{stream}:all" if i % 2 == 0 else f"{stream}:job-{i}", "MAXLEN", "~",
                 1000, "*", "update", payload) for i in range(2 * updates)]
    best = [float("inf"), float("inf")]
    for _ in range(rounds):
        c0 = time.process_time()
        pipe = redis.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        await pipe.execute()
        c1 = time.process_time()
        await execute_batch(redis, commands)
        c2 = time.process_time()
        best = [min(best[0], c1 - c0), min(best[1], c2 - c1)]
    await redis.delete(*{c[1] for c in commands})
    await redis.aclose()
    return best[0] * 1e6, best[1] * 1e6


# --- the daemon ----------------------------------------------------------------------------------


def bench_spec(job_id: str) -> JobSpec:
    return JobSpec.model_validate({
        "job_id": job_id, "workload": "noop", "rounds": 10,
        "server": {"worker": "srv"},
        "clients": [{"worker": "cli0"}, {"worker": "cli1"}],
        "timeouts": {"heartbeat_s": 3600, "round_s": None, "job_s": None},
    })


BENCH_KEY = b"the daemon key of the benchmark"


async def preload_jobs(store: JobStore, jobs: int) -> list[Job]:
    """Create and dispatch ``jobs`` jobs; returns them as dispatched (with their run ids)."""
    now = datetime.now(UTC)
    created = [new_job(f"bench-{i:05d}", bench_spec(f"bench-{i:05d}"), now)
               for i in range(jobs)]
    await store.insert_many(created)
    dispatches: list[Event] = [
        JobDispatched(event_id=f"dispatch.{job.id}", job_id=job.id,
                      assignments={p: uuid.uuid4().hex for p in job.participants})
        for job in created
    ]
    for i in range(0, len(dispatches), 500):
        await apply_events(store, dispatches[i:i + 500], now)
    dispatched = await store.load_many([job.id for job in created], history=False)
    return [dispatched[job.id] for job in created]


def bench_events(jobs: list[Job], per_job: int) -> list[Event]:
    """Heartbeats and round metrics, interleaved across jobs like real traffic, signed as a
    worker signs them."""
    events: list[Event] = []
    pids = ["server", "client-0", "client-1"]
    for k in range(per_job):
        for job in jobs:
            pid = pids[k % 3]
            worker = job.participants[pid].worker
            common: dict[str, Any] = {"event_id": uuid.uuid4().hex, "job_id": job.id,
                                      "participant": pid, "worker": worker, "seq": k}
            run_id = job.participants[pid].run_id
            assert run_id is not None
            secret = run_secret(BENCH_KEY, job.id, pid, run_id)
            if k % 4 == 3:
                events.append(sign_event(secret, RoundMetrics(
                    round=k // 4 + 1, metrics={"loss": 1 / (k + 1), "accuracy": 0.5},
                    **common)))
            else:
                events.append(sign_event(secret, Heartbeat(round=k // 4 + 1, **common)))
    return events


async def daemon_rate(url: str, store: JobStore, jobs: int, per_job: int, batch: int,
                      profile: Path | None = None) -> tuple[float, float, int, float]:
    """(events/s, store round trips per event, events, events per apply_batch)."""
    redis = connect_redis(url)
    ns = f"bench-{uuid.uuid4().hex[:6]}"
    options = DaemonOptions(namespace=ns, event_shards=4, consumer="bench", batch_size=batch,
                            block_ms=100, daemon_key=BENCH_KEY)
    keys = Keys(ns, 4)
    created = await preload_jobs(store, jobs)
    events = bench_events(created, per_job)
    tune_gc()  # as ``orchestrator daemon`` does at startup
    daemon = Daemon(store, redis, options)
    consumer = daemon.consumer([*keys.all_event_streams(), keys.control], batch=batch)
    await consumer.ensure_groups()
    bus = Bus(redis, keys)
    for i in range(0, len(events), 1000):
        await bus.publish_events(events[i:i + 1000])
    trips0 = store.round_trips
    profiler = cProfile.Profile() if profile else None
    async with anyio.create_task_group() as tg:
        t0 = time.perf_counter()
        if profiler:
            profiler.enable()
        await tg.start(daemon.run)
        while daemon.stats.entries_acked < len(events):  # noqa: ASYNC110 (applied and acked)
            await anyio.sleep(0.002)
        elapsed = time.perf_counter() - t0
        if profiler:
            profiler.disable()
        daemon.stop()
    if profiler and profile:
        profiler.dump_stats(profile)
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
    trips = store.round_trips - trips0
    assert daemon.stats.rejections == 0
    pending = await consumer.pending_count()
    assert pending == 0, f"{pending} entries left pending"
    for key in [*keys.all_event_streams(), keys.control, keys.updates]:
        await redis.delete(key)
    await redis.aclose()
    per_batch = len(events) / max(1, daemon.stats.batches)
    return len(events) / elapsed, trips / len(events), len(events), per_batch


def _spread(samples: list[float]) -> str:
    return (f"(median of {len(samples)}, in run order: "
            + ", ".join(f"{x:,.0f}" for x in samples) + ")")


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        redis_server = start_redis(Path(tmp) / "redis")
        mongo_server = None if args.no_wire else start_mongo(Path(tmp) / "mongo")
        try:
            n = args.jobs * args.events_per_job
            print(f"# {n} events ({args.jobs} jobs x {args.events_per_job}), "
                  f"batch {args.batch}, {args.repeat} runs of each, Redis {redis_server.url}")
            # Interleaved, so that a slow patch of a shared machine hits both sides.
            raw: list[float] = []
            pre: list[float] = []
            rates: list[float] = []
            trips = per_batch = 0.0
            for run in range(args.repeat):
                concurrent, preloaded = await raw_transport(redis_server.url, n, args.batch)
                raw.append(concurrent)
                pre.append(preloaded)
                mem = MemoryJobStore()
                rate, trips, _, per_batch = await daemon_rate(
                    redis_server.url, mem, args.jobs, args.events_per_job, args.batch,
                    args.profile if run == 0 else None)
                rates.append(rate)
            raw_rate, pre_rate, rate = (statistics.median(x) for x in (raw, pre, rates))
            print(f"raw transport  producer process -> XREADGROUP {args.batch} + XACK: "
                  f"{raw_rate:10,.0f} ev/s  {_spread(raw)}")
            print(f"raw transport  pre-loaded stream, XREADGROUP {args.batch} + XACK:  "
                  f"{pre_rate:10,.0f} ev/s  {_spread(pre)}")
            print(f"daemon (memory store) event application:        {rate:10,.0f} ev/s  "
                  f"{_spread(rates)}; {1e6 / rate:.1f} us/event")
            per_run = ", ".join(f"{d / r:.0%}" for d, r in zip(rates, raw, strict=True))
            print(f"ratio daemon / raw (producer process):           {rate / raw_rate:10.0%}"
                  f"  (per run: {per_run})")
            print(f"ratio daemon / raw (pre-loaded):                 {rate / pre_rate:10.0%}")
            print(f"store round trips per event (memory):            {trips:10.4f}"
                  f"  (1 per {1 / trips:,.0f} events; {per_batch:,.0f} events per batch)")
            piped, batched = await commit_cpu(redis_server.url)
            print(f"commit of 240 update XADDs, CPU: redis-py pipeline {piped:,.0f} us, "
                  f"execute_batch {batched:,.0f} us (best of 50)")
            if mongo_server is not None:
                store = connect_mongo(mongo_server.url, f"bench-{uuid.uuid4().hex[:6]}")
                await store.ensure_indexes()
                wrate, wtrips, wn, wper = await daemon_rate(redis_server.url, store, args.wire_jobs,
                                                      args.events_per_job, args.batch)
                await store.close()
                print(f"daemon (Mongo wire stand-in, {wn} events):    {wrate:10,.0f} ev/s")
                print(f"store round trips per event (wire stand-in):    {wtrips:10.4f}"
                      f"  (1 per {1 / wtrips:,.0f} events; {wper:,.0f} events per batch)")
        finally:
            redis_server.stop()
            if mongo_server is not None:
                mongo_server.stop()


def cli() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--produce":
        asyncio.run(_produce(sys.argv[2], sys.argv[3], int(sys.argv[4])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--events-per-job", type=int, default=20)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--wire-jobs", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=5,
                        help="runs of the raw transport and of the daemon; medians are reported")
    parser.add_argument("--no-wire", action="store_true")
    parser.add_argument("--profile", type=Path, default=None,
                        help="cProfile the memory-store daemon run into this file")
    anyio.run(main, parser.parse_args())


if __name__ == "__main__":
    cli()
