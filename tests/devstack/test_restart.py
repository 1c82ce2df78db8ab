"""``orchestrator dev down`` then ``dev up`` restarts the stack in place: same ports, same
credentials, same data (Redis streams with their pending entries, Mongo documents, S3 objects),
so processes left running carry on; ``dev status`` says what runs where."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymongo
import pytest
import redis

from orchestrator.devstack import stack
from orchestrator.devstack.servers import pid_alive
from tests.helpers import run_cli, subprocess_env, unique

NS = "orchestrator"


@pytest.fixture
def dev_dir(tmp_path: Path) -> Iterator[Path]:
    """A stack directory that is always torn down, whatever the test did."""
    directory = tmp_path / "dev"
    yield directory
    stack.down(directory)


def _env_files(directory: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(directory.glob("env*"))}


def _status(directory: Path) -> tuple[int, dict[str, Any]]:
    result = run_cli("dev", "status", "--dir", directory, "--json")
    assert result.stderr == ""
    return result.returncode, json.loads(result.stdout)


def _servers(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    servers = report["servers"]
    assert isinstance(servers, list)
    return {s["name"]: s for s in servers}


def _assert_private(root: Path) -> None:
    for current, dirs, files in os.walk(root):
        for name in dirs:
            assert stat.S_IMODE(Path(current, name).stat().st_mode) == 0o700, name
        for name in files:
            assert stat.S_IMODE(Path(current, name).stat().st_mode) == 0o600, name


def test_down_then_up_keeps_ports_credentials_and_data(dev_dir: Path) -> None:
    assert run_cli("dev", "up", "--dir", dev_dir, "--worker", "w1").returncode == 0
    before = _env_files(dev_dir)
    assert set(before) >= {"env", "env.daemon", "env.submitter", "env.watcher", "env.admin",
                           "env.worker.w1"}
    code, running = _status(dev_dir)
    assert code == 0 and running["state"] == "running"
    pids = {name: s["pid"] for name, s in _servers(running).items()}
    assert all(isinstance(pid, int) and pid_alive(pid) for pid in pids.values())
    assert [w["name"] for w in running["workers"]] == ["w1"]

    daemon_env = stack.read_env_file(dev_dir / "env.daemon")
    stream = f"{NS}:events:{{0}}"
    with redis.Redis.from_url(daemon_env[stack.REDIS_URL]) as r:
        r.xgroup_create(stream, "daemon", id="0", mkstream=True)
        entry = r.xadd(stream, {"event": "kept"})
        delivered = r.xreadgroup("daemon", "d1", {stream: ">"}, count=1)
        assert delivered[0][1][0][0] == entry  # now pending for d1
    mongo: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        daemon_env[stack.MONGO_URL])
    with mongo:
        mongo.orchestrator.jobs.insert_one({"_id": "kept"})
    s3 = stack.s3_client(daemon_env[stack.S3_ENDPOINT_URL], daemon_env[stack.AWS_ACCESS_KEY_ID],
                         daemon_env[stack.AWS_SECRET_ACCESS_KEY])
    s3.put_object(Bucket=stack.BUCKET, Key="dev/kept", Body=b"model")

    assert run_cli("dev", "down", "--dir", dev_dir).returncode == 0
    assert not any(pid_alive(int(pid)) for pid in pids.values())
    code, stopped = _status(dev_dir)
    assert code == 1 and stopped["state"] == "stopped"
    assert {n: (s["pid"], s["port"], s["alive"], s["port_in_use"])
            for n, s in _servers(stopped).items()} == {
        n: (None, s["port"], False, False) for n, s in _servers(running).items()}
    text = run_cli("dev", "status", "--dir", dev_dir)
    assert text.returncode == 1 and "stopped" in text.stdout
    assert "dev up restarts it on the same port" in text.stdout

    again = run_cli("dev", "up", "--dir", dev_dir)
    assert again.returncode == 0, again.stderr
    assert "restarted in place" in again.stdout
    assert _env_files(dev_dir) == before  # same ports, passwords, S3 keys and daemon key
    code, restarted = _status(dev_dir)
    assert code == 0 and restarted["state"] == "running"
    assert {n: s["port"] for n, s in _servers(restarted).items()} == {
        n: s["port"] for n, s in _servers(running).items()}

    with redis.Redis.from_url(daemon_env[stack.REDIS_URL]) as r:
        assert r.xrange(stream) == [(entry, {b"event": b"kept"})]
        pending = r.xpending_range(stream, "daemon", min="-", max="+", count=10)
        assert [(p["message_id"], p["consumer"]) for p in pending] == [(entry, b"d1")]
    worker_url = stack.read_env_file(dev_dir / "env.worker.w1")[stack.REDIS_URL]
    with redis.Redis.from_url(worker_url) as r:
        assert r.ping()  # the worker's user and password still hold
    mongo2: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
        daemon_env[stack.MONGO_URL])
    with mongo2:
        assert mongo2.orchestrator.jobs.find_one({"_id": "kept"}) == {"_id": "kept"}
    assert s3.get_object(Bucket=stack.BUCKET, Key="dev/kept")["Body"].read() == b"model"
    _assert_private(dev_dir / "redis")
    assert (dev_dir / "redis" / "appendonlydir").is_dir()  # the data is the AOF in DIR/redis


def test_a_taken_port_is_refused_by_name_and_new_ports_moves_on(dev_dir: Path) -> None:
    first = stack.up(dev_dir)
    mongo_port = first.stack.servers["mongo"].port
    secret = first.stack.env[stack.AWS_SECRET_ACCESS_KEY]
    stack.down(dev_dir)
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", mongo_port))
        squatter.listen()
        refused = run_cli("dev", "up", "--dir", dev_dir)
        assert refused.returncode == 1
        assert f"mongo server of {dev_dir.resolve()}" in refused.stderr
        assert f"port {mongo_port}" in refused.stderr
        assert "--new-ports" in refused.stderr
        assert not (dev_dir / stack.STACK_FILE).exists()  # nothing was started
        code, report = _status(dev_dir)
        assert code == 1 and _servers(report)["mongo"]["port_in_use"] is True

        moved = run_cli("dev", "up", "--dir", dev_dir, "--new-ports")
        assert moved.returncode == 0, moved.stderr
    env = stack.read_env_file(dev_dir / "env")
    assert f":{mongo_port}/" not in env[stack.MONGO_URL]
    assert env[stack.AWS_SECRET_ACCESS_KEY] == secret  # the credentials stay


# --- the done-when of issue 14 part 5: processes left running carry on ---------------------------


class Proc:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name, self.log_path = name, log_dir / f"{name}.log"
        with self.log_path.open("wb") as log:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "orchestrator.cli.main", *argv], env=env,
                stdout=log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, text: str, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in self.log():
            assert self.popen.poll() is None, f"{self.name} exited:\n{self.log()[-3000:]}"
            assert time.monotonic() < deadline, f"no {text!r} from {self.name}:\n{self.log()}"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)


def _submit(dev_dir: Path, job_id: str, spec_dir: Path) -> subprocess.CompletedProcess[str]:
    spec = {"job_id": job_id, "workload": "noop", "rounds": 2,
            "server": {"worker": "srv"}, "clients": [{"worker": "cli0"}],
            "timeouts": {"start_s": 30, "heartbeat_s": 20, "round_s": 30, "job_s": 60}}
    path = spec_dir / f"{job_id}.json"
    path.write_text(json.dumps(spec))
    env = subprocess_env(stack.read_env_file(dev_dir / "env"))
    return run_cli("submit", path, "--wait", "--timeout", "60", env=env, timeout_s=90)


@pytest.mark.slow
def test_a_daemon_and_workers_left_running_carry_on_after_down_and_up(
        dev_dir: Path, tmp_path: Path) -> None:
    assert stack.up(dev_dir, workers=["srv", "cli0"]).started
    base = {"ORCHESTRATOR_BLOCK_MS": "200", "ORCHESTRATOR_LOG_FORMAT": "json"}
    procs = [
        Proc("daemon", ["daemon", "--consumer", unique("d")],
             subprocess_env(stack.read_env_file(dev_dir / "env.daemon"), **base), tmp_path),
        Proc("srv", ["worker", "--role", "server", "--name", "srv"],
             subprocess_env(stack.read_env_file(dev_dir / "env.worker.srv"), **base), tmp_path),
        Proc("cli0", ["worker", "--role", "client", "--name", "cli0"],
             subprocess_env(stack.read_env_file(dev_dir / "env.worker.cli0"), **base), tmp_path),
    ]
    try:
        procs[0].wait_for("daemon ready")
        for worker in procs[1:]:
            worker.wait_for("worker ready")
        first = _submit(dev_dir, unique("before"), tmp_path)
        assert first.returncode == 0, first.stdout + first.stderr + procs[0].log()
        assert "FINISHED_SUCCESSFULLY" in first.stdout + first.stderr

        assert run_cli("dev", "down", "--dir", dev_dir).returncode == 0
        time.sleep(1.0)  # the processes (reads block 200 ms) see their servers gone, retry
        assert all(p.popen.poll() is None for p in procs), [p.log()[-2000:] for p in procs]
        up = run_cli("dev", "up", "--dir", dev_dir)
        assert up.returncode == 0, up.stderr
        assert "restarted in place" in up.stdout

        after = _submit(dev_dir, unique("after"), tmp_path)
        logs = "\n".join(f"--- {p.name}\n{p.log()[-3000:]}" for p in procs)
        assert after.returncode == 0, after.stdout + after.stderr + logs
        assert "FINISHED_SUCCESSFULLY" in after.stdout + after.stderr
        # The same processes did it: none exited and was started again.
        assert all(p.popen.poll() is None for p in procs), logs
    finally:
        for proc in procs:
            proc.stop()
