"""The whole system over TLS: a real ``orchestrator daemon``, a server and a client
``orchestrator worker`` process and the CLI (``submit --wait``, ``checkpoints --download``),
with Redis on ``rediss://`` with mutual TLS, MongoDB with ``tls`` and S3 on ``https``, each
verified with the test CA, configured only through ``ORCHESTRATOR_*`` variables. A fedavg job
of one round exchanges its model through S3 and saves a final checkpoint, so every process
talks to every server it uses over TLS. No log line carries the Redis password or a key."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from orchestrator.devstack.servers import S3ServerProcess, ServerProcess
from tests.helpers import run_cli, subprocess_env, unique
from tests.tls.certs import PKI
from tests.tls.conftest import TLS_BUCKET

pytestmark = pytest.mark.slow

DAEMON_KEY = "the daemon key of the TLS end-to-end test"


@pytest.fixture
def tls_env(tls_redis_mutual: ServerProcess, tls_mongo: ServerProcess,
            tls_s3: S3ServerProcess, pki: PKI) -> dict[str, str]:
    namespace = unique("tls")
    return subprocess_env({
        "ORCHESTRATOR_REDIS_URL": tls_redis_mutual.url,
        "ORCHESTRATOR_REDIS_CA_FILE": str(pki.ca),
        "ORCHESTRATOR_REDIS_CERT_FILE": str(pki.client_cert),
        "ORCHESTRATOR_REDIS_KEY_FILE": str(pki.client_key),
        "ORCHESTRATOR_MONGO_URL": tls_mongo.url,
        "ORCHESTRATOR_MONGO_CA_FILE": str(pki.ca),
        "ORCHESTRATOR_MONGO_DB": namespace.replace("-", "_"),
        "ORCHESTRATOR_S3_URL": f"s3://{TLS_BUCKET}/{namespace}",
        "ORCHESTRATOR_S3_ENDPOINT_URL": tls_s3.url,
        "ORCHESTRATOR_S3_CA_FILE": str(pki.ca),
        "AWS_ACCESS_KEY_ID": tls_s3.access_key,
        "AWS_SECRET_ACCESS_KEY": tls_s3.secret_key,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
        "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
        "ORCHESTRATOR_NAMESPACE": namespace,
        "ORCHESTRATOR_EVENT_SHARDS": "2",
        "ORCHESTRATOR_BLOCK_MS": "100",
        "ORCHESTRATOR_WORKER_TTL_S": "3",
        "ORCHESTRATOR_LOG_FORMAT": "json",
        "ORCHESTRATOR_DAEMON_KEY": DAEMON_KEY,
    })


@pytest.fixture
def processes(tls_env: dict[str, str], tmp_path: Path) -> Iterator[list[tuple[str, Path]]]:
    """The daemon, a server worker ``tls-srv`` and a client worker ``tls-cli``; killed after
    the test by their PIDs. Yields (name, log path) pairs."""
    argvs = {
        "daemon": ["daemon"],
        "server": ["worker", "--role", "server", "--name", "tls-srv"],
        "client": ["worker", "--role", "client", "--name", "tls-cli"],
    }
    started: list[subprocess.Popen[bytes]] = []
    logs: list[tuple[str, Path]] = []
    for name, argv in argvs.items():
        log_path = tmp_path / f"{name}.log"
        env = tls_env if name == "daemon" else {
            k: v for k, v in tls_env.items() if k != "ORCHESTRATOR_DAEMON_KEY"}
        with log_path.open("wb") as log:
            started.append(subprocess.Popen(
                [sys.executable, "-m", "orchestrator.cli.main", *argv],
                env=env, stdout=log, stderr=subprocess.STDOUT))
        logs.append((name, log_path))
    yield logs
    for popen in started:
        if popen.poll() is None:
            popen.kill()
        popen.wait(10)


def _spec(path: Path) -> Path:
    shared = {"seed": 3, "features": 6, "classes": 3, "round_timeout_s": 60}
    path.write_text(json.dumps({
        "workload": "fedavg",
        "rounds": 1,
        "server": {"worker": "tls-srv", "config": {**shared, "test_samples": 50}},
        "clients": [{"worker": "tls-cli", "config": {**shared, "samples": 40, "epochs": 1}}],
        "timeouts": {"start_s": 60, "heartbeat_s": 15, "round_s": 60, "job_s": 90},
    }))
    return path


async def test_a_job_runs_with_every_server_over_tls(
        tls_env: dict[str, str], processes: list[tuple[str, Path]], tmp_path: Path,
        tls_s3: S3ServerProcess) -> None:
    spec = _spec(tmp_path / "job.json")
    done = await anyio.to_thread.run_sync(lambda: run_cli(
        "submit", spec, "--wait", "--timeout", "90", "--json", env=tls_env, timeout_s=120))
    logs = {name: path.read_text(errors="replace") for name, path in processes}
    assert done.returncode == 0, (done.stdout, done.stderr, logs)
    job_id = json.loads(done.stdout.splitlines()[0])["id"]

    downloaded = await anyio.to_thread.run_sync(lambda: run_cli(
        "checkpoints", job_id, "--final", "--download", tmp_path / "models", "--json",
        env=tls_env))
    assert downloaded.returncode == 0, downloaded.stdout + downloaded.stderr
    files = [p for p in (tmp_path / "models").rglob("*") if p.is_file()]
    assert files and all(p.stat().st_size > 0 for p in files)

    for name, text in logs.items():
        assert "Traceback" not in text, (name, text)
        for secret in (tls_s3.secret_key, DAEMON_KEY):
            assert secret not in text, f"a secret in the {name} log"
