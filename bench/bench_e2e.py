"""End-to-end benchmark of the path that ships: jobs through `orchestrator daemon` and workers.

N `noop` jobs are pre-loaded on the submissions stream, then one daemon process and the worker
processes drain them; the peer (taskiq with taskiq-redis's streams broker) drains N pre-loaded
no-op tasks with one worker process. A light-load run measures latency at 25 jobs/s. Runs of
each system are interleaved; what each printed line measures, and results, are in
bench/README.md.

    python bench/bench_e2e.py                # 10,000 jobs, 3 interleaved runs, both stores
    python bench/bench_e2e.py --quick        # 1,000 jobs (smoke)
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from e2e_support import (  # noqa: E402 - after the path tweak
    READ_COUNT,
    BenchRedis,
    Proc,
    UpdateFollower,
    cpu_seconds,
    drop_database,
    mongo_counters,
    spawn,
    stop_all,
    stopped_round_trips,
    store_round_trips,
    wait_for,
)

import orchestrator  # noqa: E402
from orchestrator.bus.keys import Keys  # noqa: E402
from orchestrator.devstack.servers import start_mongo, start_redis  # noqa: E402

KEYS = Keys()
SERVER = "e2e-server"
CLIENT = "e2e-client-{}"
STALL_S = 60.0
FOLLOW_INTERVAL_S = 0.01
"""Pause between two reads of the updates stream under load (the bench shares the cores)."""
NOT_OURS = ("redis", "stand-in", "bench")
"""CPU readings that are not the system under test's own processes."""


@dataclass
class Sample:
    """One timed drain of ``jobs`` pre-loaded jobs (or tasks)."""

    label: str
    jobs: int
    seconds: float
    startup_s: float
    cpu_s: dict[str, float]
    redis: Counter[str]
    trips: Counter[str] | None = None
    ops: Counter[str] | None = None
    failed: int = 0

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds

    def cpu_us(self, name: str) -> float:
        return self.cpu_s[name] / self.jobs * 1e6

    def own_cpu_us(self) -> float:
        return sum(self.cpu_us(n) for n in self.cpu_s if n not in NOT_OURS)

    def redis_per_job(self) -> float:
        return sum(self.redis.values()) / self.jobs

    def trips_per_job(self) -> float | None:
        return None if self.trips is None else sum(self.trips.values()) / self.jobs


@dataclass
class Latency:
    label: str
    started_ms: list[float] = field(default_factory=list)
    finished_ms: list[float] = field(default_factory=list)
    seen_ms: list[float] = field(default_factory=list)


class Stack:
    """Valkey (and the Mongo stand-in) for the whole bench, a temp dir, the bench's clients."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.dir = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
        self.redis = start_redis(self.dir / "redis")
        self.mongo = start_mongo(self.dir / "mongo") if "mongo" in args.stores else None
        self.bench = BenchRedis(self.redis.url)
        self.mongo_client: Any = None
        if self.mongo is not None:
            from pymongo import MongoClient  # noqa: PLC0415

            self.mongo_client = MongoClient(self.mongo.url, directConnection=True)
        self.orchestrator = shutil.which("orchestrator", path=str(Path(sys.executable).parent))
        self.orchestrator = self.orchestrator or shutil.which("orchestrator") or "orchestrator"

    def env(self, db: str = "orchestrator") -> dict[str, str]:
        import os  # noqa: PLC0415

        mongo_url = self.mongo.url if self.mongo else "mongodb://127.0.0.1:9/"  # never dialled
        return {**os.environ, "ORCHESTRATOR_REDIS_URL": self.redis.url,
                "ORCHESTRATOR_MONGO_URL": mongo_url, "ORCHESTRATOR_MONGO_DB": db,
                "ORCHESTRATOR_S3_URL": f"file://{self.dir}/objects",
                "ORCHESTRATOR_LOG_LEVEL": self.args.log_level,
                "ORCHESTRATOR_DAEMON_KEY": f"bench-{uuid.uuid4().hex}",
                "BENCH_TASKIQ_REDIS_URL": self.redis.url,
                "BENCH_TASKIQ_XREAD_COUNT": str(self.args.taskiq_xread_count)}

    def close(self) -> None:
        self.bench.close()
        if self.mongo_client is not None:
            self.mongo_client.close()
        for server in (self.mongo, self.redis):
            if server is not None:
                server.stop()
        if not self.args.keep:
            shutil.rmtree(self.dir, ignore_errors=True)


# --- ours ------------------------------------------------------------------------------------


def job_spec(job_id: str, clients: int) -> str:
    return json.dumps({"job_id": job_id, "workload": "noop", "server": {"worker": SERVER},
                       "clients": [{"worker": CLIENT.format(k)} for k in range(clients)]})


def start_ours(stack: Stack, store: str, clients: int, db: str, tag: str) -> list[Proc]:
    """Workers first (until registered), then the daemon: the daemon is the last process."""
    env, logs, orch = stack.env(db), stack.dir, stack.orchestrator
    capacity = ["--capacity", str(stack.args.capacity)] if stack.args.capacity else []
    names = [SERVER] + [CLIENT.format(k) for k in range(clients)]
    procs = [spawn(f"{tag}-worker-{name}",
                   [orch, "worker", "--role", "server" if name == SERVER else "client",
                    "--name", name, *capacity], env, logs) for name in names]
    alive_keys = [KEYS.worker_alive(name) for name in names]
    wait_for(lambda: stack.bench.exists(*alive_keys) == len(names), "workers to register",
             procs, interval_s=0.02)
    if store == "memory":
        env = {**env, "ORCHESTRATOR_MONGO_URL": "memory://"}
    procs.append(spawn(f"{tag}-daemon", [orch, "daemon"], env, logs))
    return procs


def cpu_sources(stack: Stack, procs: list[Proc], *, with_stand_in: bool = False
                ) -> dict[str, Callable[[], float]]:
    """How to read the CPU seconds of each process of a run, by its printed name."""
    sources: dict[str, Callable[[], float]] = {
        ("daemon" if p.name.endswith("daemon") else p.name.partition("-worker-")[2]): p.cpu_s
        for p in procs}
    sources["redis"] = lambda: cpu_seconds(stack.redis.pid)
    sources["bench"] = time.process_time
    if with_stand_in and stack.mongo is not None:
        mongo_pid = stack.mongo.pid
        sources["stand-in"] = lambda: cpu_seconds(mongo_pid)
    return sources


def follow_until(follower: UpdateFollower, total: int, procs: list[Proc]) -> None:
    last_progress, done = time.monotonic(), follower.done()
    while follower.done() < total:
        if follower.count_only:  # under load: read what came every 10 ms, cheaply
            if follower.poll(block_ms=None) < READ_COUNT:
                time.sleep(FOLLOW_INTERVAL_S)
        else:
            follower.poll(block_ms=100)
        if follower.done() != done:
            last_progress, done = time.monotonic(), follower.done()
        elif time.monotonic() - last_progress > STALL_S:
            tails = "\n".join(f"--- {p.name}\n{p.log_tail()}" for p in procs)
            raise RuntimeError(f"no job finished for {STALL_S:.0f} s ({done}/{total}):\n{tails}")
        if any(not p.alive() for p in procs):
            dead = next(p for p in procs if not p.alive())
            raise RuntimeError(f"{dead.name} exited ({done}/{total}):\n{dead.log_tail()}")


def store_counts(stack: Stack, store: str) -> tuple[Counter[str], Counter[str]] | None:
    """The stand-in's counters now (None for the memory store: read at the stop)."""
    return mongo_counters(stack.mongo_client) if store == "mongo" else None


def run_ours(stack: Stack, store: str, clients: int, jobs: int, tag: str) -> Sample:
    bench = stack.bench
    bench.flush()
    before = bench.command_counts()
    bench.preload(KEYS.submissions, "spec", (job_spec(f"{tag}-{i:06d}", clients)
                                             for i in range(jobs)))
    submitted = bench.window(before, bench.command_counts())
    started = time.perf_counter()
    procs = start_ours(stack, store, clients, f"e2e_{tag}", tag)
    sources = cpu_sources(stack, procs, with_stand_in=store == "mongo")
    follower = UpdateFollower(bench, KEYS.updates)
    try:
        wait_for(lambda: (bench.group_info(KEYS.submissions, KEYS.daemon_group) or {})
                 .get("entries-read"), "the daemon's first read", procs, timeout_s=120)
        t0 = time.perf_counter()
        cpu0 = {name: read() for name, read in sources.items()}
        redis0, store0 = bench.command_counts(), store_counts(stack, store)
        follow_until(follower, jobs, procs)
        t1 = time.perf_counter()
        cpu1 = {name: read() for name, read in sources.items()}
        redis1, store1 = bench.command_counts(), store_counts(stack, store)
    finally:
        stop_all(reversed(procs))
    if store == "memory":  # the daemon's own count, from its last log line (its whole life)
        trips = stopped_round_trips(procs[-1])
        store0, store1 = (Counter(), Counter()), (Counter(), Counter({"round_trips": trips or 0}))
        if store == "mongo":
            drop_database(stack.mongo_client, f"e2e_{tag}")
    label = f"ours, {store} store, " + (f"1 server + {clients} clients" if clients
                                         else "server only")
    sample = Sample(label, jobs, t1 - t0, t0 - started,
                    {name: cpu1[name] - cpu0[name] for name in cpu1},
                    submitted + bench.window(redis0, redis1), failed=len(follower.failed))
    if store0 is not None and store1 is not None:
        ops, trips = store1[0] - store0[0], store1[1] - store0[1]
        sample.ops = ops if store == "mongo" else None
        sample.trips = store_round_trips(trips) if store == "mongo" else trips
    return sample


def run_latency(stack: Stack, store: str, tag: str) -> Latency:
    """Submissions at ``--rate`` jobs/s for ``--latency-seconds``, one XADD each."""
    bench, args = stack.bench, stack.args
    bench.flush()
    procs = start_ours(stack, store, 0, f"e2e_{tag}", tag)
    follower = UpdateFollower(bench, KEYS.updates, count_only=False)
    submitted: dict[str, float] = {}

    def submit(job_id: str) -> None:
        spec = job_spec(job_id, 0)
        submitted[job_id] = time.time()
        bench.xadd(KEYS.submissions, {"spec": spec})

    try:
        submit(f"{tag}-warm-up")
        follow_until(follower, 1, procs)
        due = time.time()
        end, count = due + args.latency_seconds, 0
        while due < end:
            wait_ms = (due - time.time()) * 1000
            if wait_ms > 0.5:
                follower.poll(block_ms=max(1, int(wait_ms)))
                continue
            submit(f"{tag}-{count:05d}")
            count, due = count + 1, due + 1 / args.rate
        follow_until(follower, len(submitted), procs)
    finally:
        stop_all(reversed(procs))
        if store == "mongo":
            drop_database(stack.mongo_client, f"e2e_{tag}")
    result = Latency(f"ours, {store} store")
    for job_id, at in submitted.items():
        if job_id.endswith("warm-up"):
            continue
        result.started_ms.append((follower.started_at[job_id] - at) * 1000)
        result.finished_ms.append((follower.finished_at[job_id] - at) * 1000)
        result.seen_ms.append((follower.finished_seen[job_id] - at) * 1000)
    return result


# --- the peer --------------------------------------------------------------------------------


def run_taskiq(stack: Stack, jobs: int, tag: str) -> Sample:
    """One ``taskiq worker`` process (``--workers 1``) drains ``jobs`` pre-loaded tasks."""
    import os  # noqa: PLC0415

    os.environ.setdefault("BENCH_TASKIQ_REDIS_URL", stack.redis.url)
    from e2e_taskiq_app import GROUP, STREAM, TASK_NAME, broker  # noqa: PLC0415
    from taskiq.message import TaskiqMessage  # noqa: PLC0415

    bench, args = stack.bench, stack.args
    bench.flush()
    bench.client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    messages = (broker.formatter.dumps(TaskiqMessage(
        task_id=uuid.uuid4().hex, task_name=TASK_NAME, labels={}, labels_types={}, args=[],
        kwargs={})).message for _ in range(jobs))
    before = bench.command_counts()
    bench.preload(STREAM, "data", messages)
    submitted = bench.window(before, bench.command_counts())
    started = time.perf_counter()
    worker = spawn(f"{tag}-taskiq", [
        sys.executable, "-m", "taskiq", "worker", "e2e_taskiq_app:broker", "--app-dir",
        str(HERE), "--workers", "1", "--max-async-tasks", str(args.taskiq_max_async),
        "--max-prefetch", str(args.taskiq_prefetch), "--ack-type", "when_executed",
        "--log-level", "WARNING"], stack.env(), stack.dir)
    sources = {"worker": worker.cpu_s, "redis": lambda: cpu_seconds(stack.redis.pid),
               "bench": time.process_time}

    def group(key: str) -> Callable[[], Any]:
        return lambda: (bench.group_info(STREAM, GROUP) or {}).get(key)

    def drained() -> bool:
        info = bench.group_info(STREAM, GROUP) or {}
        return info.get("entries-read", 0) >= jobs and info.get("pending") == 0

    try:
        wait_for(group("entries-read"), "taskiq's first read", [worker], timeout_s=120)
        t0 = time.perf_counter()
        cpu0 = {name: read() for name, read in sources.items()}
        redis0 = bench.command_counts()
        wait_for(drained, "taskiq to drain", [worker], timeout_s=600, interval_s=0.005)
        t1 = time.perf_counter()
        cpu1 = {name: read() for name, read in sources.items()}
        redis1 = bench.command_counts()
    finally:
        worker.stop()
    return Sample("taskiq + taskiq-redis streams broker", jobs, t1 - t0, t0 - started,
                  {name: cpu1[name] - cpu0[name] for name in cpu1},
                  submitted + bench.window(redis0, redis1))


# --- the whole bench -------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--jobs", type=int, default=10_000, help="jobs per run (10,000)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke: 1,000 jobs and 2 s of light load (unless given)")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved runs (3)")
    parser.add_argument("--store", choices=["memory", "mongo", "both"], default="both",
                        help="job store of the daemon (both: memory and the Mongo stand-in)")
    parser.add_argument("--mongo-jobs", type=int, default=None,
                        help="jobs per Mongo stand-in run (default: a fifth of --jobs)")
    parser.add_argument("--clients-jobs", type=int, default=None,
                        help="jobs per run of the clients shape (default: --jobs)")
    parser.add_argument("--clients", type=int, default=2,
                        help="clients per job of the second shape, ours only (0: skip it)")
    parser.add_argument("--skip-peer", action="store_true", help="no taskiq runs")
    parser.add_argument("--rate", type=float, default=25.0, help="light load, jobs/s (25)")
    parser.add_argument("--latency-seconds", type=float, default=None,
                        help="light-load submission time per run (4 s; --quick 2 s; 0: skip)")
    parser.add_argument("--capacity", type=int, default=None,
                        help="worker --capacity (default: the worker's own default)")
    parser.add_argument("--log-level", default="info",
                        help="ORCHESTRATOR_LOG_LEVEL of our processes (info, as shipped)")
    parser.add_argument("--taskiq-max-async", type=int, default=100,
                        help="taskiq worker --max-async-tasks (100)")
    parser.add_argument("--taskiq-prefetch", type=int, default=0,
                        help="taskiq worker --max-prefetch (0)")
    parser.add_argument("--taskiq-xread-count", type=int, default=100,
                        help="taskiq-redis RedisStreamBroker xread_count (100)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    args = parser.parse_args(argv)
    if args.quick and "-n" not in (argv or sys.argv) and "--jobs" not in (argv or sys.argv):
        args.jobs = 1_000
    if args.latency_seconds is None:
        args.latency_seconds = 2.0 if args.quick else 4.0
    args.mongo_jobs = args.mongo_jobs or max(1, args.jobs // 5)
    args.clients_jobs = args.clients_jobs or args.jobs
    args.stores = ["memory", "mongo"] if args.store == "both" else [args.store]
    return args


def peer_available() -> bool:
    try:
        import taskiq  # noqa: F401, PLC0415
        import taskiq_redis  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


def run_plan(args: argparse.Namespace, peer: bool) -> list[tuple[str, str, int, int]]:
    """One run's throughput steps, in order: (system, store, clients, jobs)."""
    plan = []
    for i, store in enumerate(args.stores):
        jobs = args.mongo_jobs if store == "mongo" else args.jobs
        plan.append(("ours", store, 0, jobs))
        if peer and i == 0:
            plan.append(("peer", "", 0, args.jobs))
    if args.clients:
        plan.append(("ours", args.stores[0], args.clients, args.clients_jobs))
    return plan


def main(argv: list[str] | None = None) -> int:
    from e2e_report import latency_line, sample_line, summary  # noqa: PLC0415

    args = parse_args(argv)
    peer = not args.skip_peer and peer_available()
    if not args.skip_peer and not peer:
        print("taskiq / taskiq-redis not installed (pip install -e '.[bench]'): peer skipped")
    stack = Stack(args)
    samples: list[Sample] = []
    latencies: list[Latency] = []
    version = stack.bench.client.info("server").get("valkey_version", "?")
    print(f"# e2e: {args.jobs:,} noop jobs per run, {args.repeat} interleaved run(s), "
          f"stores {'+'.join(args.stores)}, Valkey {version} at {stack.redis.url}, "
          f"code {Path(orchestrator.__file__).parent}, log level {args.log_level}, "
          f"worker capacity {args.capacity or 'default'}; timed from the consumer's first "
          f"read of its queue to the last job done", flush=True)
    try:
        for r in range(1, args.repeat + 1):
            run = f"[{r}/{args.repeat}]"
            for system, store, clients, jobs in run_plan(args, peer):
                tag = f"r{r}{system}{store[:3]}{clients}"
                sample = (run_taskiq(stack, jobs, tag) if system == "peer"
                          else run_ours(stack, store, clients, jobs, tag))
                samples.append(sample)
                print(sample_line(run, sample), flush=True)
            if args.latency_seconds > 0:
                for store in args.stores:
                    latency = run_latency(stack, store, f"r{r}lat{store[:3]}")
                    latencies.append(latency)
                    print(latency_line(run, latency), flush=True)
        print(summary(samples, latencies, args.repeat), flush=True)
    finally:
        stack.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
