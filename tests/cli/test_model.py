"""Pure pieces of the CLI and the watcher: formatting, trends, stream-entry parsing, job ids."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from rich.console import Console

from orchestrator.cli.submit import job_id_for, validate_spec
from orchestrator.cli.watch import json_line
from orchestrator.core import Job, JobSpec, ParticipantState, new_job
from orchestrator.watch.follow import parse_update
from orchestrator.watch.model import (
    JobDetail,
    format_age,
    job_summary,
    metric_trends,
    sparkline,
)
from orchestrator.watch.render import job_view, jobs_view

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def make_job(job_id: str = "j1", rounds: int = 3) -> Job:
    spec = JobSpec.model_validate({"workload": "noop", "rounds": rounds,
                                   "server": {"worker": "s"}, "clients": [{"worker": "c"}]})
    return new_job(job_id, spec, NOW - timedelta(seconds=90))


def test_sparkline_scales_between_min_and_max() -> None:
    assert sparkline([]) == ""
    assert sparkline([1.0, 2.0, 3.0]) == "▁▅█"
    assert sparkline([5.0, 5.0]) == "▅▅"
    assert sparkline([0.9, 0.1])[0] == "█"


@pytest.mark.parametrize(("seconds", "text"), [
    (None, "-"), (0, "0s"), (59.9, "59s"), (61, "1m01s"), (3600 * 2 + 300, "2h05m"),
    (86_400 * 3 + 3600 * 4, "3d04h"),
])
def test_format_age(seconds: float | None, text: str) -> None:
    assert format_age(seconds) == text


def test_metric_trends_put_the_server_and_accuracy_first() -> None:
    rows = [
        {"participant": "client-0", "round": 2, "metrics": {"loss": 0.5}},
        {"participant": "server", "round": 2, "metrics": {"zeta": 1.0, "accuracy": 0.8}},
        {"participant": "server", "round": 1, "metrics": {"accuracy": 0.6, "loss": 1.0}},
        {"participant": "client-0", "round": 1, "metrics": {"loss": 0.9}},
    ]
    trends = metric_trends(rows)
    assert [(t.participant, t.name) for t in trends] == [
        ("server", "accuracy"), ("server", "loss"), ("server", "zeta"), ("client-0", "loss")]
    assert trends[0].rounds == [1, 2]
    assert trends[0].values == [0.6, 0.8]
    assert trends[0].as_dict()["sparkline"] == "▁█"


def test_parse_update_reads_the_daemons_json_note_and_flat_fields() -> None:
    note = {"job_id": "j1", "status": "IN_PROGRESS", "phase": "running", "round": 2,
            "version": 7, "reason": "round 2 started", "error": None,
            "at": "2026-01-02T03:04:05.500000+00:00"}
    parsed = parse_update(b"1767323045500-0", {b"update": json.dumps(note).encode()})
    assert parsed["version"] == 7
    assert parsed["at"] == datetime(2026, 1, 2, 3, 4, 5, 500000, tzinfo=UTC)
    assert parsed["entry_id"] == "1767323045500-0"

    flat = parse_update("1767323045500-1", {"type": "cancel", "round": "3"})
    assert flat["round"] == 3
    assert flat["at"] == datetime.fromtimestamp(1767323045.5, UTC)


def test_json_line_overlays_the_note_on_the_current_state() -> None:
    job = make_job()
    line = json_line(job, NOW, {"status": "IN_PROGRESS", "version": 4, "reason": "why",
                                "error": "worker_lost"})
    assert line["id"] == "j1"
    assert (line["status"], line["version"], line["reason"]) == ("IN_PROGRESS", 4, "why")
    assert line["error"] is None  # the note's error code never replaces the job's error object
    assert line["participant_states"] == {"server": "pending", "client-0": "pending"}


def test_job_summary_counts_only_participants_heard_from_recently() -> None:
    summary = job_summary(make_job(), NOW)
    assert summary["participants"] == 2
    assert summary["participants_alive"] == 0  # pending: never heard from
    assert summary["age_s"] == 90

    job = make_job()
    heartbeat_s = job.spec.timeouts.heartbeat_s
    started = {
        "server": replace(job.server, state=ParticipantState.STARTED,
                          last_seen=NOW - timedelta(seconds=1)),
        "client-0": replace(job.participants["client-0"], state=ParticipantState.STARTED,
                            last_seen=NOW - timedelta(seconds=heartbeat_s + 1)),
    }
    summary = job_summary(replace(job, participants=started), NOW)
    assert summary["participants_alive"] == 1  # the client's heartbeat is too old


def test_views_render_without_a_terminal() -> None:
    console = Console(width=120, record=True, file=io.StringIO())
    job = make_job()
    console.print(jobs_view([job], NOW, banner="Redis unreachable"))
    console.print(job_view(JobDetail(job, NOW)))
    text = console.export_text()
    assert "Redis unreachable" in text
    assert "j1" in text
    assert "0/3" in text


def test_job_ids_from_idempotency_keys_are_stable() -> None:
    spec = JobSpec.model_validate({"workload": "noop", "server": {"worker": "s"}})
    assert job_id_for(spec, "k") == job_id_for(spec, "k") != job_id_for(spec, "other")
    assert job_id_for(spec, None) != job_id_for(spec, None)
    named = spec.model_copy(update={"job_id": "mine"})
    assert job_id_for(named, "k") == "mine"


def test_validate_spec_names_every_field_path(capsys: pytest.CaptureFixture[str]) -> None:
    text = json.dumps({"workload": "", "server": {"worker": "s", "config": []},
                       "clients": [{}, {"worker": "ok", "data_path": 3}]})
    with pytest.raises(Exception, match="4 problems"):
        validate_spec(text, "x.json")
    err = capsys.readouterr().err
    for path in ("x.json: workload:", "x.json: server.config:", "x.json: clients[0].worker:",
                 "x.json: clients[1].data_path:"):
        assert path in err, err
