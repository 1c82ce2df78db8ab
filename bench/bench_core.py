"""Micro-benchmarks behind bench/README.md's per-change figures, in-process (no servers).

    python bench/bench_core.py [--jobs 1000] [--events-per-job 20]

Prints, per event of the daemon benchmark's traffic (heartbeats and round metrics of the
participants of dispatched jobs, interleaved across jobs):

1. ``decide`` (which takes the liveness shortcut for this traffic) and ``decide_by_rules``
   (the transitions table's path, which ``decide`` took for everything before the shortcut);
2. ``EVENT_ADAPTER.validate_json`` of the same events;
3. packing a 200-id XACK and one event XADD with redis-py's asyncio packer and with hiredis
   (``orchestrator.bus.packing``), the packer ``connect_redis`` now installs;
4. the costs behind the hot path's small choices: reading a field of a pydantic model (an
   event) against a field of a frozen slotted dataclass (``Job``, ``Participant``), an enum
   member (``Phase.RUNNING``) against a module global, a NamedTuple built by its ``__new__``
   (and the same fields as a frozen dataclass) against ``fast_tuple``, and ``evolve`` of a
   participant and of a job (and of a job against ``dataclasses.replace``).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import timeit
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from redis.asyncio.connection import Connection

sys.path.insert(0, str(Path(__file__).parent))

from bench_daemon import bench_events, bench_spec

from orchestrator.bus.packing import with_hiredis_packing
from orchestrator.core import (
    EVENT_ADAPTER,
    Decision,
    Event,
    Job,
    JobDispatched,
    Phase,
    decide,
)
from orchestrator.core._types import evolve, fast_tuple
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


@dataclasses.dataclass(frozen=True, slots=True)
class FrozenDecision:
    """``Decision``'s fields as a frozen dataclass: what the NamedTuple is compared with."""

    job: Job
    changed: bool
    reason: str
    commands: tuple[object, ...] = ()
    metrics: tuple[object, ...] = ()
    checkpoints: tuple[object, ...] = ()
    quiet: bool = False


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
    job = jobs[0]
    part = job.participants["server"]
    model = events[0]  # a Heartbeat: events are still pydantic models
    global_member = Phase.RUNNING
    small = [
        ("pydantic model field read", "model.seq", "Job/Participant slot", "part.state"),
        ("Phase.RUNNING", "Phase.RUNNING", "module global", "global_member"),
        ("Decision(...)", "Decision(job, True, 'r', (), (), (), True)", "fast_tuple",
         "fast_tuple(Decision, (job, True, 'r', (), (), (), True))"),
        ("as a frozen dataclass", "FrozenDecision(job, True, 'r', (), (), (), True)",
         "fast_tuple", "fast_tuple(Decision, (job, True, 'r', (), (), (), True))"),
        ("evolve(participant)", "evolve(part, {'last_seq': 1, 'last_seen': now})",
         "evolve(job)", "evolve(job, {'deadline_at': now, 'updated_at': now})"),
        ("dataclasses.replace(job)", "replace(job, deadline_at=now, updated_at=now)",
         "evolve(job)", "evolve(job, {'deadline_at': now, 'updated_at': now})"),
    ]
    names = {"Phase": Phase, "Decision": Decision, "fast_tuple": fast_tuple, "evolve": evolve,
             "replace": dataclasses.replace, "FrozenDecision": FrozenDecision,
             "global_member": global_member}
    values = (part, model, job, now)
    empty = statement_ns("pass", names, values)
    for name_a, stmt_a, name_b, stmt_b in small:
        a, b = (statement_ns(stmt, names, values) - empty for stmt in (stmt_a, stmt_b))
        print(f"{name_a:26s} {a:6.0f} ns, {name_b:18s} {b:6.0f} ns")


def statement_ns(statement: str, names: dict[str, object], values: tuple[object, ...],
                 loops: int = 200_000) -> float:
    """ns per run of ``statement`` in a loop inside a function, as on the hot path: the
    values as locals, the names as module globals; best of 5."""
    source = (f"def run(part, model, job, now):\n    for _ in range({loops}):\n"
              f"        {statement}\n")
    namespace = dict(names)
    exec(source, namespace)
    run = namespace["run"]
    return min(timeit.repeat(lambda: run(*values), number=1, repeat=5)) / loops * 1e9

if __name__ == "__main__":
    main()
