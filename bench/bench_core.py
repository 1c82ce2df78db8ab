"""Micro-benchmarks behind bench/README.md's per-change figures, in-process (no servers).

    python bench/bench_core.py [--jobs 1000] [--events-per-job 20]

Prints, per event of the daemon benchmark's traffic (heartbeats and round metrics of the
participants of dispatched jobs, interleaved across jobs):

1. ``decide`` (which takes the liveness shortcut for this traffic) and ``decide_by_rules``
   (the transitions table's path, which ``decide`` took for everything before the shortcut);
2. ``EVENT_ADAPTER.validate_json`` of the same events;
3. packing a 200-id XACK and one event XADD with redis-py's asyncio packer and with hiredis
   (``orchestrator.bus.packing``), the packer ``connect_redis`` now installs.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from redis.asyncio.connection import Connection

sys.path.insert(0, str(Path(__file__).parent))

from bench_daemon import bench_events, bench_spec

from orchestrator.bus.packing import with_hiredis_packing
from orchestrator.core import EVENT_ADAPTER, Decision, Event, Job, JobDispatched, decide
from orchestrator.core.decide import decide_by_rules
from orchestrator.daemon.tuning import tune_gc


def dispatched_jobs(count: int, now: datetime) -> list[Job]:
    jobs = []
    for i in range(count):
        job = Job.new(f"bench-{i:05d}", bench_spec(f"bench-{i:05d}"), now)
        dispatch = JobDispatched(event_id=f"dispatch.{job.id}", job_id=job.id,
                                 assignments={p: uuid.uuid4().hex for p in job.participants})
        jobs.append(decide(job, dispatch, now).job)
    return jobs


def per_event(decide_fn: Callable[[Job, Event, datetime], Decision], jobs: list[Job],
              events: list[Event], now: datetime) -> float:
    """µs per event, each job's events applied in order (as the daemon does)."""
    current = {job.id: job for job in jobs}
    t0 = time.perf_counter()
    for i, event in enumerate(events):
        at = now + timedelta(microseconds=i)
        current[event.job_id] = decide_fn(current[event.job_id], event, at).job
    return (time.perf_counter() - t0) / len(events) * 1e6


def per_call(fn: Callable[[], object], repeat: int) -> float:
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--events-per-job", type=int, default=20)
    args = parser.parse_args()
    now = datetime.now(UTC)
    jobs = dispatched_jobs(args.jobs, now)
    events = bench_events(jobs, args.events_per_job)
    raw = [event.model_dump_json() for event in events]
    tune_gc()
    print(f"# {len(events)} events ({args.jobs} jobs x {args.events_per_job}), best of 3")
    fast = min(per_event(decide, jobs, events, now) for _ in range(3))
    rules = min(per_event(decide_by_rules, jobs, events, now) for _ in range(3))
    print(f"decide (liveness shortcut):       {fast:7.1f} us/event")
    print(f"decide_by_rules (reference path): {rules:7.1f} us/event")
    parse = min(per_call(lambda: [EVENT_ADAPTER.validate_json(r) for r in raw], 1)
                for _ in range(3)) / len(raw)
    print(f"EVENT_ADAPTER.validate_json:      {parse:7.1f} us/event")
    plain, packed = Connection(), with_hiredis_packing(Connection)()
    xack = ("XACK", "ns:events:{0}", "daemon", *(f"1795318929436-{i}" for i in range(200)))
    xadd = ("XADD", "ns:events:{0}", "MAXLEN", "~", 1_000_000, "*", "event", raw[0])
    for name, args_ in (("XACK of 200 ids", xack), ("XADD of one event", xadd)):
        py = min(per_call(lambda a=args_: plain.pack_command(*a), 2000) for _ in range(3))
        c = min(per_call(lambda a=args_: packed.pack_command(*a), 2000) for _ in range(3))
        print(f"pack {name:18s} redis-py {py:7.1f} us, hiredis {c:6.1f} us")


if __name__ == "__main__":
    main()
