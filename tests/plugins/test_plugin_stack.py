"""Plugins through the whole system: a daemon process and worker processes (``orchestrator
worker``) on the real local stack (Valkey, rclone S3, the Mongo stand-in).

The workers offer the installed ``linreg`` example (examples/custom-workload, installed by
``.ci/run``), a workload named with ``--workload NAME=module:callable`` from a directory on
their Python path, and skip a broken ``--workload`` and a broken entry point."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from helpers import run_cli, subprocess_env, unique

from orchestrator.bus import Bus, connect_redis
from orchestrator.bus.keys import Keys
from orchestrator.core import ErrorCode, Job, JobSpec, JobStatus
from orchestrator.storage import open_object_store
from orchestrator.store import connect_mongo
from tests.plugins.support import write_plugin_dir

pytestmark = pytest.mark.slow

HAS_LINREG = importlib.util.find_spec("linreg_workload") is not None
needs_linreg = pytest.mark.skipif(
    not HAS_LINREG, reason="the custom-workload example is not installed: "
    "pip install --no-deps -e examples/custom-workload (.ci/run does)")


@dataclass
class Stack:
    env: dict[str, str]
    keys: Keys
    db: str
    server: str
    clients: list[str]
    logs: dict[str, Path]
    prefix: str

    def log(self, name: str) -> str:
        return self.logs[name].read_text(errors="replace")


def _wait_for_line(stack: Stack, popen: subprocess.Popen[bytes], name: str, line: str) -> None:
    for _ in range(600):
        if line in stack.log(name):
            return
        assert popen.poll() is None, stack.log(name)[-3000:]
        time.sleep(0.05)  # (a sync, module-scoped fixture: no event loop runs here)
    raise AssertionError(f"{name} never logged {line!r}:\n{stack.log(name)[-3000:]}")


@pytest.fixture(scope="module")
def stack(stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("plugin-stack")
    prefix = unique("stackplug").replace("-", "_")
    plugins = write_plugin_dir(root / "path", prefix=prefix,
                               entry_points={"kaput": "BROKEN:run"})
    namespace, db = unique("plug"), unique("plugdb").replace("-", "_")
    env = subprocess_env(stack_env, ORCHESTRATOR_NAMESPACE=namespace, ORCHESTRATOR_MONGO_DB=db,
                         ORCHESTRATOR_EVENT_SHARDS="2", ORCHESTRATOR_BLOCK_MS="200",
                         ORCHESTRATOR_REAPER_INTERVAL_S="0.2", ORCHESTRATOR_WORKER_TTL_S="3",
                         ORCHESTRATOR_LOG_FORMAT="json", PYTHONPATH=str(plugins))
    run_id = unique("w")
    server, clients = f"srv-{run_id}", [f"cli-{run_id}-{i}" for i in range(2)]
    stack = Stack(env, Keys(namespace, event_shards=2), db, server, clients, {}, prefix)
    started: list[subprocess.Popen[bytes]] = []
    extra = ["--workload", f"mine={prefix}_good:TYPED",
             "--workload", "gone=no_such_module_anywhere:fn"]
    commands = {"daemon": ["daemon"],
                server: ["worker", "--role", "server", "--name", server, *extra],
                **{c: ["worker", "--role", "client", "--name", c, *extra] for c in clients}}
    try:
        for name, args in commands.items():
            stack.logs[name] = root / f"{name}.log"
            with stack.logs[name].open("wb") as out:
                popen = subprocess.Popen([sys.executable, "-m", "orchestrator.cli.main", *args],
                                         env=env, stdout=out, stderr=subprocess.STDOUT)
            started.append(popen)
        for name, popen in zip(commands, started, strict=True):
            _wait_for_line(stack, popen, name,
                           "daemon ready" if name == "daemon" else "worker ready")
        yield stack
    finally:
        for popen in started:
            if popen.poll() is None:
                popen.terminate()
        for popen in started:
            try:
                popen.wait(15)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait(5)


async def _submit_and_wait(stack: Stack, spec: dict[str, Any], timeout_s: float = 60) -> Job:
    job_spec = JobSpec.model_validate(spec)
    assert job_spec.job_id is not None
    redis = connect_redis(stack.env["ORCHESTRATOR_REDIS_URL"])
    store = connect_mongo(stack.env["ORCHESTRATOR_MONGO_URL"], stack.db)
    try:
        await Bus(redis, stack.keys).submit(job_spec.model_dump_json(exclude_none=True))
        with anyio.fail_after(timeout_s):
            while True:
                job = await store.find_by_id(job_spec.job_id)
                if job is not None and job.status.is_terminal:
                    return job
                await anyio.sleep(0.1)
    finally:
        await store.close()
        await redis.aclose()


def _linreg_spec(stack: Stack, job_id: str, client_config: dict[str, Any]) -> dict[str, Any]:
    return {"job_id": job_id, "workload": "linreg", "rounds": 3,
            "server": {"worker": stack.server, "config": {"seed": 3, "features": 4}},
            "clients": [{"worker": c, "config": {"seed": 3, "features": 4, **client_config}}
                        for c in stack.clients],
            "timeouts": {"start_s": 30, "heartbeat_s": 10, "round_s": 60, "job_s": 120}}


async def test_workers_advertise_their_plugins_and_log_the_broken_ones(stack: Stack) -> None:
    redis = connect_redis(stack.env["ORCHESTRATOR_REDIS_URL"])
    try:
        alive = await Bus(redis, stack.keys).alive_workers([stack.server, *stack.clients])
    finally:
        await redis.aclose()
    assert set(alive) == {stack.server, *stack.clients}
    offered = alive[stack.server]["workloads"]
    assert {"noop", "sleep", "fail", "fedavg", "mine"} <= set(offered)
    assert offered["mine"]["version"] == "7.1"
    assert offered["mine"]["source"] == f"{stack.prefix}_good:TYPED"
    assert "kaput" not in offered and "gone" not in offered
    if HAS_LINREG:
        assert offered["linreg"]["version"] == "0.1.0"
        assert "samples" in offered["linreg"]["client_config"]["properties"]
    skipped = [json.loads(line) for line in stack.log(stack.server).splitlines()
               if "workload plugin skipped" in line]
    by_name = {entry["workload"]: entry for entry in skipped}
    assert set(by_name) == {"kaput", "gone"}
    assert "a_module_that_does_not_exist_anywhere" in by_name["kaput"]["error"]
    assert by_name["gone"]["source"] == "no_such_module_anywhere:fn"
    assert "ModuleNotFoundError" in by_name["gone"]["error"]


@needs_linreg
async def test_the_example_plugin_runs_a_job_with_metrics_and_a_checkpoint(stack: Stack
                                                                           ) -> None:
    job_id = unique("linreg")
    job = await _submit_and_wait(stack, _linreg_spec(stack, job_id, {"samples": 300}))
    assert job.status is JobStatus.FINISHED_SUCCESSFULLY, (job.error, stack.log(stack.server))
    store = connect_mongo(stack.env["ORCHESTRATOR_MONGO_URL"], stack.db)
    try:
        metrics = await store.metrics(job_id)
        manifest = await store.checkpoints(job_id)
    finally:
        await store.close()
    server_rows = {r["round"]: r["metrics"] for r in metrics if r["participant"] == "server"}
    assert sorted(server_rows) == [1, 2, 3]
    assert server_rows[3]["mse"] < server_rows[1]["mse"], "the fit improves"
    assert server_rows[3]["clients"] == 2.0
    client_rows = {(r["participant"], r["round"]) for r in metrics if r["participant"] != "server"}
    assert client_rows == {(f"client-{i}", r) for i in range(2) for r in (1, 2, 3)}
    assert [(c["round"], c["participant"]) for c in manifest] == [
        (1, "server"), (2, "server"), (3, "server")]
    final = manifest[-1]
    assert final["final"] is True
    assert job.final_checkpoint is not None and job.final_checkpoint.key == final["key"]
    env = stack.env
    objects = open_object_store(env["ORCHESTRATOR_S3_URL"],
                                endpoint_url=env["ORCHESTRATOR_S3_ENDPOINT_URL"],
                                access_key_id=env["AWS_ACCESS_KEY_ID"],
                                secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    async with objects:
        data = await objects.get_data(final["key"])
    assert hashlib.sha256(data).hexdigest() == final["sha256"]
    assert data[:2] == b"PK", "an .npz archive"


@needs_linreg
async def test_a_bad_config_for_the_plugin_fails_the_participant_with_the_field(
        stack: Stack) -> None:
    job_id = unique("badcfg")
    job = await _submit_and_wait(stack, _linreg_spec(stack, job_id, {"samples": "many"}))
    assert job.status is JobStatus.FINISHED_WITH_ERROR
    assert job.error is not None
    assert job.error.code is ErrorCode.INVALID_SPEC
    assert job.error.participant in {"client-0", "client-1"}
    assert "invalid client config for workload 'linreg'" in job.error.message
    assert "samples" in job.error.message
    assert job.round == 0, "no round ran: it failed before the workload started"


async def test_a_workload_named_with_the_workload_option_runs(stack: Stack) -> None:
    job_id = unique("mine")
    spec = {"job_id": job_id, "workload": "mine", "server": {"worker": stack.server,
                                                             "config": {"value": 2.5}},
            "timeouts": {"start_s": 30, "heartbeat_s": 10, "round_s": 60, "job_s": 60}}
    job = await _submit_and_wait(stack, spec)
    assert job.status is JobStatus.FINISHED_SUCCESSFULLY, job.error
    store = connect_mongo(stack.env["ORCHESTRATOR_MONGO_URL"], stack.db)
    try:
        metrics = await store.metrics(job_id)
    finally:
        await store.close()
    assert [(r["participant"], r["round"], r["metrics"]) for r in metrics] == [
        ("server", 1, {"value": 2.5})]


async def test_submit_warns_about_a_misspelled_worker_and_the_job_fails_naming_it(
        stack: Stack, tmp_path: Path) -> None:
    job_id = unique("typo")
    spec = {"job_id": job_id, "workload": "mine", "server": {"worker": stack.server},
            "clients": [{"worker": "clinet-1"}],
            "timeouts": {"start_s": 1, "heartbeat_s": 10, "round_s": 60, "job_s": 60}}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    result = run_cli("submit", path, env=stack.env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == job_id
    assert ("warning: worker 'clinet-1' is not registered now: the job waits for it for at "
            "most its start timeout (1s)") in result.stderr
    store = connect_mongo(stack.env["ORCHESTRATOR_MONGO_URL"], stack.db)
    try:
        with anyio.fail_after(30):
            while (job := await store.find_by_id(job_id)) is None or not job.status.is_terminal:
                await anyio.sleep(0.1)
    finally:
        await store.close()
    assert job.status is JobStatus.FINISHED_WITH_ERROR
    assert job.error is not None and job.error.code is ErrorCode.CANNOT_SCHEDULE
    assert job.error.message == ("worker 'clinet-1' is not registered (0 of 1 required client "
                                 "workers available); gave up after the start timeout of 1s")
    status = run_cli("status", job_id, env=stack.env)
    assert "worker 'clinet-1' is not registered" in status.stdout, status.stdout
