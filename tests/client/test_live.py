"""The Python client against a running system (a real daemon and workers as processes, the
Mongo stand-in, Valkey, the rclone S3 server): a job submitted, watched and downloaded through
``orchestrator.client`` only; the blocking client inside a running event loop (as in a
notebook); the daemon's refusal of a reused job id reaching ``wait``; the live workers; and the
operator commands that need live workers (``workers``, ``why``, ``submit --wait`` of a
duplicate) through the real entry point."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from helpers import run_cli, run_clis, unique

from orchestrator.client import Client, SyncClient
from orchestrator.core import JobStatus
from orchestrator.errors import JobRejectedError, WaitTimeoutError
from tests.client.conftest import CLIENTS, SERVER


def spec(job_id: str, workload: str = "noop", *, rounds: int = 1,
         config: dict[str, Any] | None = None, server_config: dict[str, Any] | None = None,
         **extra: Any) -> dict[str, Any]:
    return {"job_id": job_id, "workload": workload, "rounds": rounds,
            "server": {"worker": SERVER, "config": server_config or {}},
            "clients": [{"worker": name, "config": config or {}} for name in CLIENTS],
            "timeouts": {"start_s": 30, "heartbeat_s": 10, "round_s": 30, "job_s": 120},
            **extra}


FEDAVG_SERVER = {"seed": 3, "test_samples": 200}
FEDAVG_CLIENT = {"seed": 3, "samples": 200}


async def test_submit_watch_and_download_a_job_through_the_client_only(
        client_env: dict[str, str], tmp_path: Path) -> None:
    job_id = unique("cl-fedavg")
    async with Client() as client:
        handle = await client.submit(spec(job_id, "fedavg", rounds=2, config=FEDAVG_CLIENT,
                                          server_config=FEDAVG_SERVER))
        assert handle.id == job_id
        assert handle.entry_id
        assert handle.warnings == []  # the workers are registered and offer fedavg
        changes = [change async for change in handle.watch()]
        job = await handle.wait(timeout_s=60)
        rows = await client.checkpoints(job_id)
        files = await client.download(job_id, tmp_path / "models")
        final = await client.download(job_id, tmp_path / "final", final_only=True)

    assert {c.job_id for c in changes} == {job_id}
    versions = [c.version for c in changes]
    assert versions == sorted(set(versions)), "one change per committed version, in order"
    assert changes[-1].status is JobStatus.FINISHED_SUCCESSFULLY
    assert any(c.status is JobStatus.IN_PROGRESS for c in changes)
    assert job.status is JobStatus.FINISHED_SUCCESSFULLY
    assert job.version >= changes[-1].version
    assert 0.0 < job.server.metrics["accuracy"] <= 1.0
    assert [r["round"] for r in rows if r["participant"] == "server"] == [1, 2]
    assert len(files) == len(rows)
    for row, path in zip(rows, files, strict=True):
        assert path == tmp_path / "models" / row["key"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == row["sha256"]
    assert len(final) == 1
    assert job.final_checkpoint is not None
    assert final[0].name == Path(job.final_checkpoint.key).name


async def test_the_sync_client_works_inside_a_running_event_loop(
        client_env: dict[str, str]) -> None:
    """As in a Jupyter cell: a loop runs in this thread, and the blocking client still works
    (its own loop runs in a thread of its own)."""
    asyncio.get_running_loop()  # (this test runs on the session's loop)
    job_id = unique("cl-sync")
    caller = threading.get_ident()
    with SyncClient() as client:
        handle = client.submit(spec(job_id))
        job = handle.wait(timeout_s=60)
        again = client.get(job_id)
        page = client.list(workload="noop", limit=50)
        changes = list(client.watch(job_id))
        workers = {w.name for w in client.workers()}
    assert threading.get_ident() == caller
    assert job.status is JobStatus.FINISHED_SUCCESSFULLY
    assert again.version == job.version
    assert job_id in [j.id for j in page.jobs]
    assert changes[-1].status is JobStatus.FINISHED_SUCCESSFULLY
    assert {SERVER, *CLIENTS} <= workers


async def test_wait_reports_the_daemons_refusal_of_a_reused_job_id(
        client_env: dict[str, str]) -> None:
    job_id = unique("cl-dup")
    async with Client() as client:
        first = await client.submit(spec(job_id))
        assert (await first.wait(timeout_s=60)).status is JobStatus.FINISHED_SUCCESSFULLY
        second = await client.submit(spec(job_id, rounds=2))  # same id, another spec
        with pytest.raises(JobRejectedError) as info:
            await second.wait(timeout_s=60)
        same = await client.submit(spec(job_id))  # the same spec again: the same job
        assert (await same.wait(timeout_s=60)).status is JobStatus.FINISHED_SUCCESSFULLY
        with pytest.raises(WaitTimeoutError):
            await client.wait(unique("cl-never"), timeout_s=1.5)
    assert info.value.kind == "duplicate_job"
    assert "already exists with a different spec" in info.value.reason


async def test_workers_lists_the_live_workers_with_what_they_offer(
        client_env: dict[str, str]) -> None:
    async with Client() as client:
        found = {w.name: w for w in await client.workers()}
    assert {SERVER, *CLIENTS} <= set(found)
    server = found[SERVER]
    assert server.role == "server"
    assert found[CLIENTS[0]].role == "client"
    assert {"noop", "fedavg", "sleep", "fail"} <= set(server.workloads)
    assert server.capacity is not None and server.capacity >= 1
    assert server.version
    assert server.last_heartbeat is not None
    assert server.running == len(server.participants)


def test_the_workers_command_prints_every_live_worker(system: dict[str, str]) -> None:
    result = run_cli("workers", "--json", env=system)
    assert result.returncode == 0, result.stderr
    rows = {w["name"]: w for w in json.loads(result.stdout)["workers"]}
    assert rows[SERVER]["role"] == "server"
    assert "noop" in rows[CLIENTS[1]]["workloads"]
    for name in (SERVER, *CLIENTS):
        for field in ("capacity", "running", "participants", "version", "last_heartbeat"):
            assert rows[name][field] is not None, (name, field)
    text = run_cli("workers", env=system)
    assert text.returncode == 0, text.stderr
    for expected in (SERVER, *CLIENTS, "server", "client", "noop", "ago"):
        assert expected in text.stdout


def test_submit_wait_of_a_reused_job_id_prints_the_daemons_reason(
        system: dict[str, str], tmp_path: Path) -> None:
    job_id = unique("cl-dupcli")
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec(job_id)))
    first = run_cli("submit", path, "--wait", "--timeout", "60", env=system, timeout_s=90)
    assert first.returncode == 0, first.stderr
    path.write_text(json.dumps(spec(job_id, rounds=3)))
    second = run_cli("submit", path, "--wait", "--timeout", "60", env=system, timeout_s=90)
    assert second.returncode == 1, second.stdout + second.stderr
    assert f"job {job_id} was rejected: duplicate_job" in second.stderr
    assert "FINISHED_SUCCESSFULLY" not in second.stderr  # not the old job's state
    shown = run_cli("rejections", "--job", job_id, "--json", env=system)
    assert shown.returncode == 0, shown.stderr
    assert [r["kind"] for r in json.loads(shown.stdout)["rejections"]] == ["duplicate_job"]


def test_why_names_the_failed_participant_and_what_to_do(system: dict[str, str],
                                                         tmp_path: Path) -> None:
    job_id = unique("cl-why")
    path = tmp_path / "fail.json"
    config = {"message": "boom for why", "participant": "client-1", "seconds": 3}
    path.write_text(json.dumps(spec(job_id, "fail", rounds=2, config=config,
                                    server_config=config)))
    done = run_cli("submit", path, "--wait", "--timeout", "60", env=system, timeout_s=90)
    assert done.returncode == 1, done.stdout + done.stderr
    result, as_json = run_clis([("why", job_id), ("why", job_id, "--json")], system)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for expected in (f"job {job_id}: FINISHED_WITH_ERROR", "client-1", CLIENTS[1],
                     "workload_failed", "boom for why", "last sequence number",
                     "what to do:", f"orchestrator logs {job_id} -p client-1"):
        assert expected in out, f"{expected!r} not in:\n{out}"
    data = json.loads(as_json.stdout)
    assert data["participant"] == "client-1"
    assert data["status"] == "FINISHED_WITH_ERROR"
    assert data["rule"].startswith("joint:")


def test_the_notebook_example_runs_against_the_system(system: dict[str, str],
                                                      tmp_path: Path) -> None:
    """examples/notebook.py, cell after cell as one script, with this system's worker names."""
    source = (Path(__file__).resolve().parents[2] / "examples" / "notebook.py").read_text()
    original = 'SERVER, CLIENTS = "server-1", ["client-1", "client-2"]'
    assert original in source
    script = tmp_path / "notebook.py"
    script.write_text(source.replace(original, f"SERVER, CLIENTS = {SERVER!r}, {CLIENTS!r}"))
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=system,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FINISHED_SUCCESSFULLY" in result.stdout
    assert "accuracy" in result.stdout
    assert list((tmp_path / "models").rglob("*.npz")), "the final model was downloaded"
    assert "job " in result.stdout and "server finished" in result.stdout  # why's account
