"""Every job command through the real entry point (``python -m orchestrator.cli.main``), against
the session's real Redis, S3 and Mongo stand-in, with jobs built by ``tests.cli.fill``."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from helpers import run_cli, run_clis, s3_client, unique

from orchestrator.bus import Bus, Redis
from orchestrator.core import CancelRequested, CheckpointRecord, Heartbeat, JobSpec
from orchestrator.store import MongoJobStore
from orchestrator.store.port import checkpoint_id
from orchestrator.watch.follow import stream_entries
from tests.cli.conftest import CliWorld

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, (
        f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )


# --- status / list ------------------------------------------------------------------------------


async def test_status_shows_the_job_in_detail(filled: CliWorld) -> None:
    done = filled.jobs["done"]
    result = run_cli("status", done.job_id, env=filled.env)
    ok(result)
    out = result.stdout
    for expected in (done.job_id, "FINISHED_SUCCESSFULLY", "4/4", "server", "client-2",
                     "accuracy", "checkpoints", "round-0004.npz", "server finished"):
        assert expected in out, f"{expected!r} missing from:\n{out}"


async def test_status_json_has_id_status_participants_metrics_checkpoints(
        filled: CliWorld) -> None:
    running = filled.jobs["running"]
    result = run_cli("status", running.job_id, "--json", env=filled.env)
    ok(result)
    data = json.loads(result.stdout)
    assert data["id"] == running.job_id
    assert data["status"] == "IN_PROGRESS"
    assert (data["round"], data["rounds"]) == (2, 5)
    assert [p["id"] for p in data["participants"]] == ["server", "client-0", "client-1"]
    assert {p["state"] for p in data["participants"]} == {"started"}
    accuracy = next(m for m in data["metrics"]
                    if m["participant"] == "server" and m["metric"] == "accuracy")
    assert accuracy["rounds"] == [1, 2]
    assert accuracy["latest"] == pytest.approx(0.7)
    assert [c["round"] for c in data["checkpoints"]] == [1, 2]
    assert data["history"][-1]["to"] == "IN_PROGRESS"


async def test_list_is_newest_first_and_filters(filled: CliWorld) -> None:
    every, in_progress, first = run_clis(
        [("list", "--json"), ("list", "--status", "in_progress", "--json"),
         ("list", "--limit", "1")], filled.env)
    result = every
    ok(result)
    rows = json.loads(result.stdout)
    ids = [r["id"] for r in rows]
    expected = [filled.jobs[n].job_id for n in ("queued", "running", "done")]
    assert ids == expected
    assert [r["status"] for r in rows] == ["NOT_STARTED", "IN_PROGRESS", "FINISHED_SUCCESSFULLY"]

    result = in_progress
    ok(result)
    assert [r["id"] for r in json.loads(result.stdout)] == [filled.jobs["running"].job_id]

    result = first
    ok(result)
    assert filled.jobs["queued"].job_id in result.stdout
    assert filled.jobs["done"].job_id not in result.stdout


async def test_list_rejects_an_unknown_status(filled: CliWorld) -> None:
    result = run_cli("list", "--status", "RUNNING", env=filled.env)
    assert result.returncode == 2
    assert "RUNNING" in result.stderr


# --- events --------------------------------------------------------------------------------------


async def test_events_shows_history_and_the_jobs_own_events(filled: CliWorld, redis: Redis,
                                                            store: MongoJobStore) -> None:
    running = filled.jobs["running"]
    bus = Bus(redis, filled.keys)
    mine = CancelRequested(event_id=uuid.uuid4().hex, job_id=running.job_id, reason="test me")
    other = CancelRequested(event_id=uuid.uuid4().hex, job_id=filled.jobs["done"].job_id)
    beat = Heartbeat(event_id=uuid.uuid4().hex, job_id=running.job_id, participant="server",
                     worker="srv-1", seq=99)
    await bus.publish_events([mine, other, beat])
    job = await store.get(running.job_id)
    await bus.publish_update(job, "round 2 metrics")

    as_json, with_beats, as_text = run_clis(  # (independent reads, side by side)
        [("events", running.job_id, "--json"), ("events", running.job_id, "--heartbeats", "--json"),
         ("events", running.job_id)], filled.env)
    result = as_json
    ok(result)
    data = json.loads(result.stdout)
    assert data["id"] == running.job_id
    assert [h["to"] for h in data["history"]] == ["NOT_STARTED", "IN_PROGRESS"]
    assert [e["event_id"] for e in data["events"]] == [mine.event_id]  # no heartbeat, no other
    assert data["updates"][-1]["reason"] == "round 2 metrics"

    result = with_beats
    ok(result)
    assert [e["type"] for e in json.loads(result.stdout)["events"]] == [
        "cancel.requested", "participant.heartbeat"]

    result = as_text
    ok(result)
    assert "cancel.requested" in result.stdout
    assert "test me" in result.stdout
    assert "NOT_STARTED → IN_PROGRESS" in result.stdout


# --- checkpoints ---------------------------------------------------------------------------------


async def test_checkpoints_lists_downloads_and_presigns(filled: CliWorld, tmp_path: Path) -> None:
    done = filled.jobs["done"]
    target = tmp_path / "models"
    listed, downloaded, final = run_clis(
        [("checkpoints", done.job_id, "--json"),
         ("checkpoints", done.job_id, "--download", str(target), "--presign", "--json"),
         ("checkpoints", done.job_id, "--final")], filled.env)
    result = listed
    ok(result)
    rows = json.loads(result.stdout)["checkpoints"]
    assert [(r["round"], r["final"]) for r in rows] == [(1, False), (2, False), (3, False),
                                                        (4, True)]

    result = downloaded
    ok(result)
    rows = json.loads(result.stdout)["checkpoints"]
    for row in rows:
        data = (target / row["key"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row["sha256"]
        assert data == done.objects[row["key"]]
        response = httpx.get(row["url"])
        assert response.status_code == 200
        assert response.content == data

    result = final
    ok(result)
    assert "round-0004.npz" in result.stdout
    assert "round-0001.npz" not in result.stdout


async def test_checkpoint_download_refuses_bytes_that_do_not_match(
        filled: CliWorld, s3_env: dict[str, str], tmp_path: Path) -> None:
    builder = filled.jobs["running"]
    key = next(iter(builder.objects))  # round 1's checkpoint: never uploaded by the fixture
    bucket, _, prefix = filled.env["ORCHESTRATOR_S3_URL"].removeprefix("s3://").partition("/")
    s3 = s3_client(s3_env)
    forged = b"not the model"
    s3.put_object(Bucket=bucket, Key=f"{prefix}/{key}", Body=forged,
                  Metadata={"sha256": hashlib.sha256(forged).hexdigest()})
    result = run_cli("checkpoints", builder.job_id, "--round", "1", "--download", tmp_path,
                     env=filled.env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "does not match the manifest" in result.stderr
    assert not (tmp_path / key).exists()

    result = run_cli("checkpoints", builder.job_id, "--round", "2", "--download", tmp_path,
                     env=filled.env)  # not in the store at all
    assert result.returncode == 1
    assert "download failed" in result.stderr


async def test_checkpoint_download_refuses_a_key_that_leaves_the_folder(
        filled: CliWorld, store: MongoJobStore, tmp_path: Path) -> None:
    """A manifest row whose key climbs out of DIR (``a/../../x``) is refused before any
    folder is made for it; the other checkpoints still download."""
    builder = filled.jobs["done"]  # (shared by the module: the row is removed afterwards)
    hostile = "jobs/x/../../../escaped/model.npz"
    await store.upsert_records([], [CheckpointRecord(
        builder.job_id, "server", 99, hostile, 1, "0" * 64, None, False,
        datetime.now(UTC), "hostile")])
    try:
        target = tmp_path / "models"
        result = run_cli("checkpoints", builder.job_id, "--download", target, env=filled.env)
    finally:
        await store.checkpoint_rows.delete_one({"_id": checkpoint_id(builder.job_id, 99,
                                                                     "server")})
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{hostile}: download failed" in result.stderr
    assert not (tmp_path / "escaped").exists()  # where the key's "../" would have led
    assert any(target.rglob("*.npz")), "the good checkpoints were still downloaded"


# --- submit --------------------------------------------------------------------------------------


async def test_submit_validates_names_the_job_and_puts_the_spec_on_the_stream(
        cli_world: CliWorld, redis: Redis) -> None:
    result = run_cli("submit", EXAMPLES / "fedavg.json", env=cli_world.env)
    ok(result)
    job_id = result.stdout.strip()
    assert len(job_id) == 32
    entries = stream_entries(await redis.xrange(cli_world.keys.submissions))
    specs = [JobSpec.from_json(fields[b"spec"]) for _, fields in entries]
    assert job_id in [s.job_id for s in specs]

    # The same idempotency key names the same job, twice.
    first = run_cli("submit", EXAMPLES / "noop.json", "--idempotency-key", "k-1", "--json",
                    env=cli_world.env)
    again = run_cli("submit", EXAMPLES / "noop.json", "--idempotency-key", "k-1", "--json",
                    env=cli_world.env)
    ok(first)
    ok(again)
    assert json.loads(first.stdout)["id"] == json.loads(again.stdout)["id"]
    entries = stream_entries(await redis.xrange(cli_world.keys.submissions))
    assert entries[-1][1][b"idempotency_key"] == b"k-1"


async def test_submit_reads_stdin(cli_world: CliWorld) -> None:
    spec = json.loads((EXAMPLES / "noop.json").read_text()) | {"job_id": unique("stdin")}
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli.main", "submit", "-"],
        input=json.dumps(spec), env=cli_world.env, capture_output=True, text=True,
        timeout=60, check=False,
    )
    ok(result)
    assert result.stdout.strip() == spec["job_id"]


def test_submit_bad_input_is_exit_2_with_every_problem(cli_world: CliWorld,
                                                        tmp_path: Path) -> None:
    missing = run_cli("submit", tmp_path / "nope.json", env=cli_world.env)
    assert missing.returncode == 2
    assert "no such file" in missing.stderr

    broken = tmp_path / "broken.json"
    broken.write_text('{"workload": "noop",')
    result = run_cli("submit", broken, env=cli_world.env)
    assert result.returncode == 2
    assert "not valid JSON" in result.stderr
    assert "line 1" in result.stderr

    invalid = tmp_path / "invalid.json"
    invalid.write_text(json.dumps({
        "workload": "fedavg", "server": {}, "rounds": 0, "colour": "red",
        "clients": [{"worker": "ok"}, {"worker": "bad name"}],
    }))
    result = run_cli("submit", invalid, env=cli_world.env)
    assert result.returncode == 2
    for problem in ("server.worker: Field required", "rounds: Input should be greater",
                    "colour: Extra inputs are not permitted", "clients[1].worker:",
                    "nothing submitted"):
        assert problem in result.stderr, result.stderr


# --- cancel --------------------------------------------------------------------------------------


async def test_cancel_puts_a_request_on_the_control_stream(filled: CliWorld,
                                                           redis: Redis) -> None:
    running = filled.jobs["queued"]
    result = run_cli("cancel", running.job_id, "--reason", "no longer needed", env=filled.env)
    ok(result)
    assert "cancel requested" in result.stdout
    entries = stream_entries(await redis.xrange(filled.keys.control))
    fields = entries[-1][1]
    assert fields[b"type"] == b"cancel"
    assert fields[b"job_id"] == running.job_id.encode()
    assert fields[b"reason"] == b"no longer needed"
    assert b"(cli)" in fields[b"requested_by"]


def test_cancel_of_a_finished_job_changes_nothing(filled: CliWorld) -> None:
    done = filled.jobs["done"]
    result = run_cli("cancel", done.job_id, "--json", env=filled.env)
    ok(result)
    assert json.loads(result.stdout) == {"id": done.job_id, "requested": False,
                                         "status": "FINISHED_SUCCESSFULLY"}
    result = run_cli("cancel", done.job_id, "--wait", env=filled.env)
    assert result.returncode == 1  # --wait: 0 only if it ends FINISHED_CANCELLED


# --- watch (one frame; the live view is tested in test_watch_live.py) --------------------------


def test_watch_once_draws_the_table_and_a_job(filled: CliWorld) -> None:
    result = run_cli("watch", "--once", env=filled.env)
    ok(result)
    for builder in filled.jobs.values():
        assert builder.job_id in result.stdout
    assert "2/5" in result.stdout

    done = filled.jobs["done"]
    result = run_cli("watch", done.job_id, "--once", env=filled.env)
    ok(result)
    for expected in ("FINISHED_SUCCESSFULLY", "client-2", "metrics by round", "▁"):
        assert expected in result.stdout


def test_watch_json_of_a_finished_job_is_one_line_and_exit_0(filled: CliWorld) -> None:
    done = filled.jobs["done"]
    result = run_cli("watch", done.job_id, "--json", env=filled.env)
    ok(result)
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 1
    assert lines[0]["id"] == done.job_id
    assert lines[0]["status"] == "FINISHED_SUCCESSFULLY"
    assert lines[0]["server_metrics"]["accuracy"] == pytest.approx(0.9)


# --- bad input and unreachable servers, for every command --------------------------------------

JOB_COMMANDS = [
    ("status",), ("events",), ("checkpoints",), ("logs",), ("cancel",), ("watch", "--once"),
    ("watch", "--wait-for-job", "0"),
]


def test_unknown_job_id_is_exit_2(cli_world: CliWorld) -> None:
    """Every job command (their processes side by side: each spends its time importing)."""
    commands = [(command[0], "no-such-job", *command[1:]) for command in JOB_COMMANDS]
    for command, result in zip(commands, run_clis(commands, cli_world.env), strict=True):
        assert result.returncode == 2, (command, result.stdout + result.stderr)
        assert "no job with id 'no-such-job'" in result.stderr, command
        assert "Traceback" not in result.stderr, command


def run_all(commands: list[tuple[str, ...]], env: dict[str, str]) -> list[tuple[int, str, str]]:
    """Run several ``orchestrator`` commands at once (each waits out a connect timeout)."""
    procs = [subprocess.Popen([sys.executable, "-m", "orchestrator.cli.main", *c], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for c in commands]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        results.append((proc.returncode, out, err))
    return results


def test_mongo_unreachable_is_exit_1_with_one_line(cli_world: CliWorld) -> None:
    env = cli_world.env | {"ORCHESTRATOR_MONGO_URL": "mongodb://127.0.0.1:9/",
                           "ORCHESTRATOR_CONNECT_TIMEOUT_S": "0.5"}  # (a refused port)
    commands = [("status", "x"), ("list",), ("events", "x"), ("checkpoints", "x"),
                ("cancel", "x"), ("watch", "--once"), ("watch", "x"), ("watch", "x", "--json")]
    for command, (code, out, err) in zip(commands, run_all(commands, env), strict=True):
        assert code == 1, (command, out, err)
        assert "cannot reach MongoDB at mongodb://127.0.0.1:9/" in err, (command, err)
        assert "Traceback" not in err
        assert len(err.strip().splitlines()) == 1, (command, err)


def test_redis_unreachable_is_exit_1_with_one_line(filled: CliWorld) -> None:
    env = filled.env | {"ORCHESTRATOR_REDIS_URL": "redis://127.0.0.1:9/0"}
    job_id = filled.jobs["running"].job_id
    commands = [("submit", str(EXAMPLES / "noop.json")), ("watch",), ("events", job_id),
                ("cancel", job_id)]
    for command, result in zip(commands, run_clis(commands, env), strict=True):
        assert result.returncode == 1, (command, result.stdout + result.stderr)
        assert "cannot reach Redis at redis://127.0.0.1:9/0" in result.stderr, command
        assert "Traceback" not in result.stderr, command


def test_invalid_settings_are_exit_2(cli_world: CliWorld, tmp_path: Path) -> None:
    env = cli_world.env | {"ORCHESTRATOR_REDIS_URL": "http://nope",
                           "ORCHESTRATOR_NAMESPACE": "bad namespace"}
    commands = [("status", "x"), ("list",), ("submit", str(EXAMPLES / "noop.json")), ("watch",),
                ("demo", "--dir", str(tmp_path / "demo"))]
    for command, (code, out, err) in zip(commands, run_all(commands, env), strict=True):
        assert code == 2, (command, out, err)
        assert "invalid settings" in err
        assert "ORCHESTRATOR_REDIS_URL" in err
        assert "ORCHESTRATOR_NAMESPACE" in err
    assert not (tmp_path / "demo").exists()  # the demo started nothing


def test_every_command_has_help() -> None:
    commands = ["submit", "status", "list", "cancel", "events", "checkpoints", "watch", "demo"]
    results = run_clis([(command, "--help") for command in commands], {**os.environ})
    for command, result in zip(commands, results, strict=True):
        ok(result)
        assert "Usage: orchestrator " + command in result.stdout


def test_bad_usage_is_exit_2() -> None:
    assert run_cli("status").returncode == 2  # missing JOB
    assert run_cli("list", "--limit", "0").returncode == 2
    assert run_cli("nonsense").returncode == 2
