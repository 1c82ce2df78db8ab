"""``orchestrator demo`` end to end, as a user runs it: a subprocess with a fresh stack directory.

The outcome is checked behind the demo's back, with pymongo and boto3 directly, and every
process it started (recorded in ``DIR/demo/processes.json`` and ``DIR/stack.json``) must be
gone afterwards — also when it is interrupted.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import run_cli, s3_client, subprocess_env
from pymongo import MongoClient

from orchestrator.devstack.servers import pid_alive
from orchestrator.devstack.stack import read_env_file

pytestmark = pytest.mark.slow


def recorded_pids(directory: Path, stack_state: dict[str, Any] | None = None) -> dict[str, int]:
    processes = json.loads((directory / "demo" / "processes.json").read_text())["processes"]
    pids = {p["name"]: int(p["pid"]) for p in processes}
    for server in (stack_state or {}).get("servers", []):
        pids[f"stack-{server['name']}"] = int(server["pid"])
    return pids


def test_demo_runs_fedavg_to_success_and_leaves_nothing_behind(tmp_path: Path) -> None:
    directory = tmp_path / "stack"
    env = subprocess_env({})
    result = run_cli("demo", "--rounds", "3", "--clients", "3", "--dir", directory, "--keep",
                     env=env, timeout_s=240)
    output = result.stdout + result.stderr
    stack_state = json.loads((directory / "stack.json").read_text())
    pids = recorded_pids(directory, stack_state)
    try:
        assert result.returncode == 0, output
        match = re.search(r"job (demo-[0-9a-f]{12}) FINISHED_SUCCESSFULLY", result.stdout)
        assert match, output
        job_id = match.group(1)
        for expected in ("final accuracy", f"orchestrator status {job_id}",
                         f"orchestrator checkpoints {job_id}", f"source {directory}/env",
                         f"orchestrator dev down --dir {directory}", "collection 'metrics'"):
            assert expected in result.stdout, f"{expected!r} missing:\n{output}"
        # The daemon and the workers are stopped even with --keep; the servers are not.
        for name, pid in pids.items():
            assert pid_alive(pid) == name.startswith("stack-"), (name, pid)
        check_the_job_behind_the_demos_back(directory, job_id, rounds=3, clients=3)
        status = run_cli("status", job_id, "--json", env=env | read_env_file(directory / "env"))
        assert json.loads(status.stdout)["status"] == "FINISHED_SUCCESSFULLY"
    finally:
        down = run_cli("dev", "down", "--dir", directory, env=env)
    assert down.returncode == 0, down.stderr
    left = {name: pid for name, pid in pids.items() if pid_alive(pid)}
    assert not left, f"processes left behind: {left}"


def check_the_job_behind_the_demos_back(directory: Path, job_id: str, *, rounds: int,
                                        clients: int) -> None:
    env = read_env_file(directory / "env")
    mongo: MongoClient[dict[str, Any]] = MongoClient(env["ORCHESTRATOR_MONGO_URL"],
                                                     serverSelectionTimeoutMS=5000)
    try:
        db = mongo["orchestrator"]
        job = db["jobs"].find_one({"_id": job_id})
        assert job is not None
        assert job["status"] == "FINISHED_SUCCESSFULLY"
        metrics = list(db["metrics"].find({"job_id": job_id}))
        by_round: dict[int, set[str]] = {}
        for row in metrics:
            by_round.setdefault(row["round"], set()).add(row["participant"])
        everyone = {"server", *(f"client-{i}" for i in range(clients))}
        for round_ in range(1, rounds + 1):
            assert by_round.get(round_, set()) >= everyone, (round_, by_round)
        server_rows = [m for m in metrics if m["participant"] == "server" and m["round"] >= 1]
        assert all(0.0 < m["metrics"]["accuracy"] <= 1.0 for m in server_rows)
        manifest = list(db["checkpoints"].find({"job_id": job_id}))
    finally:
        mongo.close()
    assert manifest, "no checkpoints recorded"
    assert job["final_checkpoint"]["key"] in {row["key"] for row in manifest}
    assert {row["round"] for row in manifest} == set(range(1, rounds + 1))
    bucket, _, prefix = env["ORCHESTRATOR_S3_URL"].removeprefix("s3://").partition("/")
    s3 = s3_client({"endpoint_url": env["ORCHESTRATOR_S3_ENDPOINT_URL"],
                    "access_key": env["AWS_ACCESS_KEY_ID"],
                    "secret_key": env["AWS_SECRET_ACCESS_KEY"],
                    "region": env["AWS_DEFAULT_REGION"]})
    for row in manifest:
        key = f"{prefix.strip('/')}/{row['key']}" if prefix.strip("/") else row["key"]
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert len(body) == row["size"]
        assert hashlib.sha256(body).hexdigest() == row["sha256"], row["key"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupted_demo_stops_everything_it_started(tmp_path: Path, signum: int) -> None:
    directory = tmp_path / "stack"
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli.main", "demo", "--rounds", "200",
         "--dir", str(directory)],
        env=subprocess_env({}), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:  # until the job is running
            seen.append(line)
            if " IN_PROGRESS running round " in line:
                break
        else:
            pytest.fail("the demo never ran the job:\n" + "".join(seen))
        stack_state = json.loads((directory / "stack.json").read_text())
        pids = recorded_pids(directory, stack_state)
        assert len(pids) == 3 + 1 + 4  # servers, daemon, 1 server + 3 client workers
        os.kill(proc.pid, signum)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, out + err
    assert "interrupted" in err
    assert "Traceback" not in err
    left = {name: pid for name, pid in pids.items() if pid_alive(pid)}
    assert not left, f"processes left behind: {left}\n{out}\n{err}"
    assert not (directory / "stack.json").exists()
