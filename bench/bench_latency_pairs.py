"""Light-load latency of two code trees, side by side: jobs alternate between them.

On a VM whose speed drifts by tens of percent from one minute to the next, two runs of
``bench_e2e.py`` one after the other cannot show a change of a few hundred microseconds. This
script runs both systems at once — for each tree its own Valkey, one ``orchestrator worker``
and one ``orchestrator daemon`` (memory store), the tree first on ``PYTHONPATH`` — and submits
one job at a time at ``--rate``, alternating A B B A …, waiting for each job's FINISHED update
before the next. Every sample of A has one of B next to it in time, so drift falls on both.

    python bench/bench_latency_pairs.py /path/to/tree-a /path/to/tree-b --seconds 30

A tree is a checkout (``git worktree add /tmp/base HEAD~1``); latency is from the bench's clock
just before the XADD to the ``at`` of the job's first IN_PROGRESS and FINISHED updates (the
daemon's clock, same machine) and to when the bench read the FINISHED update. Every process
is stopped by its PID.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench_e2e import KEYS, SERVER, job_spec  # (the shape of bench_e2e's jobs)
from e2e_support import (  # (this script's folder is on sys.path)
    BenchRedis,
    UpdateFollower,
    percentile,
    spawn,
    stop_all,
    wait_for,
)

from orchestrator.devstack.servers import start_redis


def start_side(name: str, tree: str, tmp: Path) -> dict[str, Any]:
    server = start_redis(tmp / f"redis-{name}")
    env = {**os.environ, "PYTHONPATH": tree, "ORCHESTRATOR_REDIS_URL": server.url,
           "ORCHESTRATOR_MONGO_URL": "memory://", "ORCHESTRATOR_S3_URL": f"file://{tmp}/{name}",
           "ORCHESTRATOR_LOG_LEVEL": "info", "ORCHESTRATOR_DAEMON_KEY": uuid.uuid4().hex}
    orch = str(Path(sys.executable).parent / "orchestrator")
    bench = BenchRedis(server.url)
    procs = [spawn(f"{name}-worker", [orch, "worker", "--role", "server", "--name", SERVER],
                   env, tmp)]
    wait_for(lambda: bench.exists(KEYS.worker_alive(SERVER)) == 1, "the worker", procs,
             interval_s=0.02)
    procs.append(spawn(f"{name}-daemon", [orch, "daemon"], env, tmp))
    return {"tree": tree, "server": server, "bench": bench, "procs": procs, "submitted": {},
            "follower": UpdateFollower(bench, KEYS.updates, count_only=False)}


def run_job(side: dict[str, Any], job_id: str, timeout_s: float = 30.0) -> None:
    side["submitted"][job_id] = time.time()
    side["bench"].xadd(KEYS.submissions, {"spec": job_spec(job_id, 0)})
    follower, end = side["follower"], time.time() + timeout_s
    while job_id not in follower.finished_at:
        follower.poll(block_ms=5)
        if time.time() > end:
            raise SystemExit(f"{job_id} did not finish in {timeout_s} s")


def report(name: str, side: dict[str, Any]) -> str:
    f, sent = side["follower"], side["submitted"]
    ids = [j for j in sent if not j.endswith("warm-up")]

    def p(at: dict[str, float]) -> str:
        ms = [(at[j] - sent[j]) * 1000 for j in ids]
        return f"{percentile(ms, 0.5):.2f} / {percentile(ms, 0.99):.2f}"

    return (f"{name} {side['tree']}: {len(ids)} jobs: submit -> IN_PROGRESS {p(f.started_at)},"
            f" -> FINISHED {p(f.finished_at)}, seen by a watcher {p(f.finished_seen)} ms"
            " (p50 / p99)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("tree_a")
    ap.add_argument("tree_b")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--rate", type=float, default=25.0, help="jobs/s over both (default 25)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-pairs-"))
    sides: dict[str, dict[str, Any]] = {}
    try:
        for name, tree in (("A", args.tree_a), ("B", args.tree_b)):
            sides[name] = start_side(name, str(Path(tree).resolve()), tmp)
            run_job(sides[name], f"{name}-warm-up")
        due, k = time.time(), 0
        end = due + args.seconds
        while due < end:
            time.sleep(max(0.0, due - time.time()))
            name = "ABBA"[k % 4]
            run_job(sides[name], f"{name}-{k:05d}")
            k, due = k + 1, due + 1 / args.rate
        for name, side in sides.items():
            print(report(name, side), flush=True)
    finally:
        for side in sides.values():
            stop_all(reversed(side["procs"]))
            side["bench"].close()
            side["server"].stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
