"""Real servers (servers.py) and ``orchestrator dev up|down`` run through the real entry point."""

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

import boto3
import pymongo
import pytest
import redis
from botocore.exceptions import ClientError
from helpers import TEST_BUCKET, run_cli, s3_client, unique

from orchestrator.devstack import stack
from orchestrator.devstack.servers import (
    ServerProcess,
    ServerStartError,
    pid_alive,
    pid_cmdline,
    start_mongo,
    start_redis,
    start_s3,
)


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


# --- servers.py ---------------------------------------------------------------------------------


def test_redis_starts_answers_and_stops(tmp_path: Path) -> None:
    server = start_redis(tmp_path)
    assert server.url == f"redis://127.0.0.1:{server.port}/0"
    with redis.Redis.from_url(server.url) as client:
        assert client.ping()
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        assert client.config_get("appendonly") == {"appendonly": "no"}
    server.stop()
    assert not server.alive()
    assert not _port_open(server.port)
    server.stop()  # idempotent


def test_redis_with_aof_keeps_a_stream_across_sigkill(tmp_path: Path) -> None:
    server = start_redis(tmp_path, appendonly=True, password="s3cret")
    with redis.Redis.from_url(server.url) as client:
        entry_id = client.xadd("jobs:events", {"type": "submitted"})
    time.sleep(1.2)  # appendfsync everysec
    server.kill()
    assert not server.alive()

    restarted = start_redis(tmp_path, server.port, appendonly=True, password="s3cret")
    try:
        with redis.Redis.from_url(restarted.url) as client:
            assert client.xrange("jobs:events") == [(entry_id, {b"type": b"submitted"})]
    finally:
        restarted.stop()


def test_start_failure_raises_with_the_log_tail(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(ServerStartError, match=r"(?s)exited during startup.*in use"):
            start_redis(tmp_path, taken.getsockname()[1])


def test_s3_serves_signed_requests_and_rejects_a_wrong_secret(tmp_path: Path) -> None:
    access_key, secret_key = stack.new_credentials()
    server = start_s3(tmp_path, access_key=access_key, secret_key=secret_key)
    try:
        assert secret_key not in " ".join(pid_cmdline(server.pid) or [])  # ps shows argv to all
        env = {
            "endpoint_url": server.url,
            "access_key": access_key,
            "secret_key": secret_key,
            "region": "us-east-1",
        }
        good = s3_client(env)
        good.create_bucket(Bucket="bucket-one")
        good.put_object(Bucket="bucket-one", Key="k", Body=b"payload")
        assert good.get_object(Bucket="bucket-one", Key="k")["Body"].read() == b"payload"

        bad = s3_client({**env, "secret_key": secret_key + "x"})
        with pytest.raises(ClientError) as excinfo:
            bad.get_object(Bucket="bucket-one", Key="k")
        assert excinfo.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    finally:
        server.stop()
    assert not server.alive()
    assert not _port_open(server.port)


def test_mongo_stand_in_starts_answers_and_stops(tmp_path: Path) -> None:
    server = start_mongo(tmp_path)
    try:
        client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(server.url)
        with client:
            client.db.things.insert_one({"_id": 1, "x": "y"})
            assert client.db.things.find_one({"_id": 1}) == {"_id": 1, "x": "y"}
    finally:
        server.stop()
    assert not server.alive()


# --- session fixtures ---------------------------------------------------------------------------


def test_session_fixtures_point_at_live_servers(
    redis_server: ServerProcess, s3_env: dict[str, str], namespace: str
) -> None:
    with redis.Redis.from_url(redis_server.url) as client:
        client.set(f"{namespace}:k", "v")
        assert client.get(f"{namespace}:k") == b"v"
    s3_client(s3_env).head_bucket(Bucket=TEST_BUCKET)
    assert namespace.startswith("test-")


def test_stack_env_has_the_dev_env_keys(stack_env: dict[str, str], tmp_env: dict[str, str]) -> None:
    assert tuple(stack_env) == stack.STACK_ENV_KEYS
    assert stack_env[stack.S3_URL].startswith(f"s3://{TEST_BUCKET}/")
    assert {k: tmp_env[k] for k in stack_env} == stack_env


# --- orchestrator dev up / down -----------------------------------------------------------------


@pytest.fixture
def dev_dir(tmp_path: Path) -> Iterator[Path]:
    """A stack directory that is always torn down, whatever the test did."""
    directory = tmp_path / "dev"
    yield directory
    stack.down(directory)


def _recorded_pids(directory: Path) -> list[int]:
    state = json.loads((directory / stack.STACK_FILE).read_text())
    return [int(s["pid"]) for s in state["servers"]]


def test_dev_up_gives_working_env_and_down_stops_every_pid(dev_dir: Path) -> None:
    up = run_cli("dev", "up", "--dir", dev_dir)
    assert up.returncode == 0, up.stderr
    env_file = dev_dir / "env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    env = stack.read_env_file(env_file)
    # The daemon key is only in the daemon's own file.
    assert tuple(env) == tuple(k for k in stack.STACK_ENV_KEYS if k != stack.DAEMON_KEY)
    assert stack.DAEMON_KEY in stack.read_env_file(dev_dir / "env.daemon")
    assert env[stack.AWS_SECRET_ACCESS_KEY] not in up.stdout + up.stderr
    assert f"source {env_file.resolve()}" in up.stdout

    # Unmodified clients, configured only from DIR/env (Redis: the submitter's user).
    with redis.Redis.from_url(env[stack.REDIS_URL]) as r:
        r.xadd("orchestrator:submissions", {"a": "1"})
        assert r.xlen("orchestrator:submissions") == 1
    mongo: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(env[stack.MONGO_URL])
    with mongo:
        mongo.orchestrator.jobs.insert_one({"_id": "j1"})
        assert mongo.orchestrator.jobs.find_one({"_id": "j1"}) == {"_id": "j1"}
    bucket = env[stack.S3_URL].removeprefix("s3://").split("/")[0]
    s3 = boto3.client(
        "s3",
        endpoint_url=env[stack.S3_ENDPOINT_URL],
        aws_access_key_id=env[stack.AWS_ACCESS_KEY_ID],
        aws_secret_access_key=env[stack.AWS_SECRET_ACCESS_KEY],
        region_name=env[stack.AWS_DEFAULT_REGION],
    )
    s3.put_object(Bucket=bucket, Key="dev/hello", Body=b"hi")
    assert s3.get_object(Bucket=bucket, Key="dev/hello")["Body"].read() == b"hi"

    pids = _recorded_pids(dev_dir)
    assert len(pids) == 3
    assert all(pid_alive(pid) for pid in pids)
    for pid in pids:
        assert env[stack.AWS_SECRET_ACCESS_KEY] not in " ".join(pid_cmdline(pid) or [])

    again = run_cli("dev", "up", "--dir", dev_dir, "--json")
    assert again.returncode == 0, again.stderr
    shown = json.loads(again.stdout)
    assert stack.AWS_SECRET_ACCESS_KEY not in shown
    assert env[stack.AWS_SECRET_ACCESS_KEY] not in again.stdout
    password = redis.connection.parse_url(env[stack.REDIS_URL])["password"]
    assert password not in again.stdout + again.stderr + up.stdout + up.stderr
    assert shown[stack.REDIS_URL] == env[stack.REDIS_URL].replace(password, "***")
    assert _recorded_pids(dev_dir) == pids  # nothing new was started

    down = run_cli("dev", "down", "--dir", dev_dir)
    assert down.returncode == 0, down.stderr
    assert not any(pid_alive(pid) for pid in pids)
    assert not (dev_dir / stack.STACK_FILE).exists()

    twice = run_cli("dev", "down", "--dir", dev_dir)
    assert twice.returncode == 0, twice.stderr
    assert "no dev stack running" in twice.stdout


def test_up_replaces_a_half_dead_stack_and_keeps_redis_data(dev_dir: Path) -> None:
    first = stack.up(dev_dir)
    assert first.started
    with redis.Redis.from_url(first.stack.role_env("daemon")[stack.REDIS_URL]) as r:
        r.set("orchestrator:kept", "yes")
    time.sleep(1.2)  # appendfsync everysec
    first.stack.servers["redis"].kill()

    second = stack.up(dev_dir)
    assert second.started
    assert not any(s.alive() for s in first.stack.servers.values())
    with redis.Redis.from_url(second.stack.role_env("daemon")[stack.REDIS_URL]) as r:
        assert r.get("orchestrator:kept") == b"yes"
    assert stack.down(dev_dir) == ["redis", "s3", "mongo"]


def test_down_never_signals_a_process_that_is_not_ours(tmp_path: Path) -> None:
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        record = {
            "name": "redis",
            "pid": bystander.pid,
            "host": "127.0.0.1",
            "port": 1,
            "url": "redis://127.0.0.1:1/0",
            "data_dir": str(tmp_path),
            "log_path": str(tmp_path / "redis.log"),
            "marker": "valkey-server",
        }
        (tmp_path / stack.STACK_FILE).write_text(json.dumps({"servers": [record]}))
        result = run_cli("dev", "down", "--dir", tmp_path)
        assert result.returncode == 0, result.stderr
        assert "no dev stack running" in result.stdout
        assert bystander.poll() is None
    finally:
        bystander.send_signal(signal.SIGKILL)
        bystander.wait()


def test_down_purge_removes_only_a_stack_directory(tmp_path: Path) -> None:
    foreign = tmp_path / "not-a-stack"
    foreign.mkdir()
    (foreign / "important.txt").write_text("keep me")
    refused = run_cli("dev", "down", "--dir", foreign, "--purge")
    assert refused.returncode == 1
    assert "important.txt" in refused.stderr
    assert (foreign / "important.txt").exists()

    ours = tmp_path / unique("dev")
    (ours / "redis").mkdir(parents=True)
    stack.write_env_file(ours / "env", {"A": "b c"})
    assert stack.read_env_file(ours / "env") == {"A": "b c"}
    purged = run_cli("dev", "down", "--dir", ours, "--purge")
    assert purged.returncode == 0, purged.stderr
    assert not ours.exists()


def test_bad_usage_exits_2(tmp_path: Path) -> None:
    assert run_cli("dev", "up", "--no-such-flag").returncode == 2
    assert run_cli("dev", "frobnicate").returncode == 2


def test_dev_dir_defaults_to_env_var(tmp_path: Path) -> None:
    env = {**os.environ, "ORCHESTRATOR_DEV_DIR": str(tmp_path / "from-env")}
    result = run_cli("dev", "down", env=env)
    assert result.returncode == 0, result.stderr
    assert str(tmp_path / "from-env") in result.stdout
