"""The operator's commands through the real entry point, on jobs and records put into the
module's own database: ``rejections [--since] [--json]``, ``status`` / ``watch`` of a rejected
id, ``why JOB`` for a lost worker, a job that could not be scheduled and a rejection, and the
one-line errors when a server is unreachable. (``workers``, ``submit --wait`` of a reused id
and ``why`` of a failed workload run against live workers in tests/client/test_live.py.)"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from helpers import run_cli, run_clis, unique

from orchestrator.client.why import deadline_of
from orchestrator.core import DeadlineExpired
from orchestrator.store import Rejection, connect_mongo
from tests.cli.conftest import CliWorld
from tests.cli.fill import JobBuilder


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def records(cli_world: CliWorld) -> dict[str, str]:
    """A job whose client-1 went silent (lost by its heartbeat deadline), a job never
    scheduled (start deadline), a rejected submission from now and one from two days ago."""
    store = connect_mongo(cli_world.env["ORCHESTRATOR_MONGO_URL"], cli_world.db)
    ids = {"lost": unique("lost"), "unscheduled": unique("unsched"),
           "rejected": unique("rejected"), "old": unique("oldrej")}
    try:
        await store.ensure_indexes()
        lost = JobBuilder(store, ids["lost"], clients=2, rounds=3)
        await lost.create()
        job = await lost.start()
        await lost.round(1)
        lost.now += timedelta(seconds=60)  # past client-1's heartbeat timeout (15 s)
        job = await store.get(ids["lost"])
        await lost.apply(DeadlineExpired(
            event_id=f"deadline.{job.id}.heartbeat.client-1.v{job.version}", job_id=job.id,
            kind="heartbeat", participant="client-1"))
        never = JobBuilder(store, ids["unscheduled"], clients=1, rounds=1)
        job = await never.create()
        never.now += timedelta(seconds=120)  # past the start timeout (60 s)
        await never.apply(DeadlineExpired(
            event_id=f"deadline.{job.id}.start.job.v{job.version}", job_id=job.id,
            kind="start", message="worker 'cli-0' is not registered"))
        now = datetime.now(UTC)
        await store.record_rejections([
            Rejection(at=now, source="submissions", entry_id="1-0", kind="invalid_spec",
                      reason="invalid job spec: rounds: must be at least 1",
                      job_id=ids["rejected"]),
            Rejection(at=now - timedelta(days=2), source="submissions", entry_id="2-0",
                      kind="oversize", reason="spec is 9999999 bytes", job_id=ids["old"]),
        ])
    finally:
        await store.close()
    return ids


def test_rejections_lists_the_daemons_reasons_newest_first(
        cli_world: CliWorld, records: dict[str, str]) -> None:
    since = (datetime.now(UTC) - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%S")
    result, recent_run, older_run, text, bad = run_clis(  # (independent reads, side by side)
        [("rejections", "--json"), ("rejections", "--since", "1h", "--json"),
         ("rejections", "--since", since, "--json"), ("rejections",),
         ("rejections", "--since", "yesterday-ish")], cli_world.env)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)["rejections"]
    assert [r["job_id"] for r in rows][:2] == [records["rejected"], records["old"]]
    assert rows[0]["kind"] == "invalid_spec"
    assert "rounds: must be at least 1" in rows[0]["reason"]

    recent = json.loads(recent_run.stdout)["rejections"]
    assert records["rejected"] in [r["job_id"] for r in recent]
    assert records["old"] not in [r["job_id"] for r in recent]
    older = json.loads(older_run.stdout)["rejections"]
    assert records["old"] in [r["job_id"] for r in older]

    assert text.returncode == 0, text.stderr
    for expected in (records["rejected"], "invalid_spec", "oversize"):
        assert expected in text.stdout

    assert bad.returncode == 2
    assert "--since" in bad.stderr


def test_status_and_watch_of_a_rejected_id_show_the_rejection(
        cli_world: CliWorld, records: dict[str, str]) -> None:
    job_id = records["rejected"]
    watches = [("watch", job_id, "--once"), ("watch", job_id, "--wait-for-job", "5")]
    shown, as_json, *watched_runs = run_clis(  # (independent reads, side by side)
        [("status", job_id), ("status", job_id, "--json"), *watches], cli_world.env)
    assert shown.returncode == 0, shown.stderr
    assert f"job {job_id} was rejected" in shown.stdout
    assert "invalid_spec: invalid job spec: rounds" in shown.stdout
    data = json.loads(as_json.stdout)
    assert data["status"] == "REJECTED"
    assert data["rejection"]["kind"] == "invalid_spec"

    for command, watched in zip(watches, watched_runs, strict=True):
        assert watched.returncode == 1, (command, watched.stdout + watched.stderr)
        assert f"job {job_id} was rejected: invalid_spec" in watched.stderr, command
        assert "no job with id" not in watched.stderr


def test_why_of_a_lost_worker_names_it_its_last_heartbeat_and_what_to_do(
        cli_world: CliWorld, records: dict[str, str]) -> None:
    job_id = records["lost"]
    result, as_json = run_clis([("why", job_id), ("why", job_id, "--json")], cli_world.env)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for expected in (f"job {job_id}: FINISHED_WITH_ERROR", "healthy clients left",
                     "joint: too few healthy clients", "the heartbeat deadline fired for "
                     "client-1 (timeout 15s)", "worker_lost", "cli-1", "last heard from",
                     "last sequence number", "what to do: check worker cli-1"):
        assert expected in out, f"{expected!r} not in:\n{out}"
    data = json.loads(as_json.stdout)
    assert data["participant"] == "client-1"
    assert data["deadline"] == "heartbeat"
    assert data["event_id"].startswith(f"deadline.{job_id}.heartbeat.client-1")


def test_why_of_a_job_never_scheduled_says_which_worker_to_start(
        cli_world: CliWorld, records: dict[str, str]) -> None:
    out = run_cli("why", records["unscheduled"], env=cli_world.env).stdout
    for expected in ("cannot schedule", "cannot_schedule", "the start deadline fired",
                     "worker 'cli-0' is not registered",
                     "start the named worker (orchestrator worker --name cli-0"):
        assert expected in out, f"{expected!r} not in:\n{out}"


def test_why_of_a_rejection_and_of_an_unknown_id(cli_world: CliWorld,
                                                records: dict[str, str]) -> None:
    out, missing = run_clis([("why", records["rejected"]), ("why", "no-such-job")],
                            cli_world.env)
    assert out.returncode == 0, out.stderr
    assert "rejected (invalid_spec)" in out.stdout
    assert "what to do: fix the spec" in out.stdout
    assert missing.returncode == 2
    assert "no job with id 'no-such-job'" in missing.stderr


def test_operator_commands_report_an_unreachable_server_in_one_line(
        cli_world: CliWorld) -> None:
    redis_down = cli_world.env | {"ORCHESTRATOR_REDIS_URL": "redis://127.0.0.1:9/0"}
    # (a refused port: half a second of server selection says as much as the default 3 s)
    mongo_down = cli_world.env | {"ORCHESTRATOR_MONGO_URL": "mongodb://127.0.0.1:9/",
                                  "ORCHESTRATOR_CONNECT_TIMEOUT_S": "0.5"}
    commands = [("rejections",), ("why", "x")]
    result, *mongo_results = [run_clis([("workers",)], redis_down)[0],
                              *run_clis(commands, mongo_down)]
    assert result.returncode == 1, result.stdout + result.stderr
    assert "cannot reach Redis at redis://127.0.0.1:9/0" in result.stderr
    for command, result in zip(commands, mongo_results, strict=True):
        assert result.returncode == 1, (command, result.stderr)
        assert "cannot reach MongoDB at mongodb://127.0.0.1:9/" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize(("event_id", "expected"), [
    ("deadline.job-1.heartbeat.client-3.v7", ("heartbeat", "client-3")),
    ("deadline.job-1.start.job.v0", ("start", None)),
    ("deadline.job-1.round.job.v12", ("round", None)),
    ("a1b2c3", None),
])
def test_deadline_event_ids_are_read_back(event_id: str,
                                          expected: tuple[str, str | None] | None) -> None:
    assert deadline_of(event_id) == expected


def test_why_of_a_job_that_succeeded_names_its_final_model(filled: CliWorld) -> None:
    done = filled.jobs["done"]
    result = run_cli("why", done.job_id, env=filled.env)
    assert result.returncode == 0, result.stderr
    for expected in (f"job {done.job_id}: FINISHED_SUCCESSFULLY: server finished",
                     "joint: server finished, final checkpoint recorded",  # (a JOINT name)
                     "final checkpoint jobs/", "round-0004.npz"):
        assert expected in result.stdout, f"{expected!r} not in:\n{result.stdout}"
    assert "what to do" not in result.stdout
