"""One Valkey node against a local three-primary Valkey cluster, same jobs, same processes.

N ``noop`` jobs (1 server + ``--clients`` clients each) are pre-loaded on the submissions
stream; then the workers and one ``orchestrator daemon`` (memory store) drain them, once on a
single node (``redis://``) and once on a cluster (``redis+cluster://``, started with
``orchestrator.devstack.cluster``), runs interleaved. Timed from the daemon's first read of the
submissions to the last job's FINISHED update; CPU per job of our processes and of the Redis
server(s). Everything shares this machine's cores, so the cluster cannot be faster here: the
figure is what the cluster's per-node routing costs, not what more machines would give.

    python bench/bench_cluster.py               # 3,000 jobs, 2 clients, 2 interleaved runs
    python bench/bench_cluster.py -n 500 --repeat 1
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import redis  # noqa: E402
from e2e_support import Proc, cpu_seconds, spawn, stop_all  # noqa: E402
from redis.cluster import RedisCluster  # noqa: E402

from orchestrator.bus.keys import Keys  # noqa: E402
from orchestrator.devstack.cluster import start_cluster  # noqa: E402
from orchestrator.devstack.servers import ServerProcess, start_redis  # noqa: E402

SERVER = "bc-server"
CLIENT = "bc-client-{}"
STALL_S = 60.0


def client_for(url: str) -> Any:
    if url.startswith("redis+cluster://"):
        return RedisCluster.from_url(url.replace("+cluster", "", 1), socket_timeout=None)
    return redis.Redis.from_url(url, socket_timeout=None)


def preload(client: Any, keys: Keys, jobs: int, clients: int, tag: str) -> None:
    pipe = client.pipeline(transaction=False)
    for i in range(jobs):
        spec = {"job_id": f"{tag}-{i:06d}", "workload": "noop", "server": {"worker": SERVER},
                "clients": [{"worker": CLIENT.format(k)} for k in range(clients)]}
        pipe.xadd(keys.submissions, {"spec": json.dumps(spec)})
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()


def wait(what: str, check: Any, procs: list[Proc], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        for proc in procs:
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited waiting for {what}:\n{proc.log_tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.02)


def entries_read(client: Any, keys: Keys) -> int:
    try:
        groups = client.xinfo_groups(keys.submissions)
    except redis.ResponseError:
        return 0
    return sum(int(g.get("entries-read") or 0) for g in groups)


def follow(client: Any, keys: Keys, jobs: int, procs: list[Proc]) -> None:
    """Read the updates stream until ``jobs`` jobs have finished."""
    done: set[str] = set()
    last, progress = "0-0", time.monotonic()
    while len(done) < jobs:
        reply = client.xread({keys.updates: last}, count=2000, block=100)
        for _stream, entries in reply or []:
            for entry_id, fields in entries:
                last = entry_id
                update = json.loads(fields[b"update"])
                if update["status"].startswith("FINISHED"):
                    done.add(update["job_id"])
                    progress = time.monotonic()
        if time.monotonic() - progress > STALL_S:
            tails = "\n".join(f"--- {p.name}\n{p.log_tail()}" for p in procs)
            raise RuntimeError(f"stalled at {len(done)}/{jobs}:\n{tails}")


def run(url: str, servers: list[ServerProcess], args: argparse.Namespace, work: Path,
        tag: str) -> dict[str, float]:
    keys = Keys(f"bc-{tag}", event_shards=args.shards)
    client = client_for(url)
    env = {**os.environ, "ORCHESTRATOR_REDIS_URL": url, "ORCHESTRATOR_MONGO_URL": "memory://",
           "ORCHESTRATOR_NAMESPACE": keys.namespace,
           "ORCHESTRATOR_EVENT_SHARDS": str(args.shards),
           "ORCHESTRATOR_S3_URL": f"file://{work}/objects", "ORCHESTRATOR_LOG_LEVEL": "info",
           "ORCHESTRATOR_DAEMON_KEY": f"bench-{uuid.uuid4().hex}"}
    orch = shutil.which("orchestrator", path=str(Path(sys.executable).parent)) or "orchestrator"
    preload(client, keys, args.jobs, args.clients, tag)
    names = [SERVER] + [CLIENT.format(k) for k in range(args.clients)]
    procs = [spawn(f"{tag}-{name}", [orch, "worker", "--role",
                                     "server" if name == SERVER else "client", "--name", name],
                   env, work) for name in names]
    try:
        wait("workers", lambda: all(client.exists(keys.worker_alive(n)) for n in names), procs)
        procs.append(spawn(f"{tag}-daemon", [orch, "daemon"], env, work))
        wait("the daemon's first read", lambda: entries_read(client, keys), procs, 120)
        t0, cpu0 = time.perf_counter(), [p.cpu_s() for p in procs]
        redis0 = sum(cpu_seconds(s.pid) for s in servers)
        follow(client, keys, args.jobs, procs)
        t1, cpu1 = time.perf_counter(), [p.cpu_s() for p in procs]
        redis1 = sum(cpu_seconds(s.pid) for s in servers)
    finally:
        stop_all(reversed(procs))
        client.close()
    daemon_cpu = cpu1[-1] - cpu0[-1]
    workers_cpu = sum(cpu1[:-1]) - sum(cpu0[:-1])
    return {"rate": args.jobs / (t1 - t0), "daemon_us": daemon_cpu / args.jobs * 1e6,
            "workers_us": workers_cpu / args.jobs * 1e6,
            "redis_us": (redis1 - redis0) / args.jobs * 1e6}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--jobs", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--shards", type=int, default=6, help="event shards (6)")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    node = start_redis(work / "node")
    cluster = start_cluster(work / "cluster")
    print(f"# {args.jobs:,} noop jobs of 1 server + {args.clients} clients per run, "
          f"{args.shards} event shards, memory store, {os.cpu_count()} cores shared by all")
    try:
        for r in range(1, args.repeat + 1):
            for label, url, servers in (("1 node    ", node.url, [node]),
                                        ("3 primaries", cluster.url, cluster.nodes)):
                m = run(url, servers, args, work, f"r{r}{label[0]}")
                print(f"[{r}/{args.repeat}] {label}: {m['rate']:7,.0f} jobs/s; CPU per job: "
                      f"daemon {m['daemon_us']:5,.0f} us, workers {m['workers_us']:5,.0f} us, "
                      f"redis {m['redis_us']:5,.0f} us", flush=True)
    finally:
        cluster.stop()
        node.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
