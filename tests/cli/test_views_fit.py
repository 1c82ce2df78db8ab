"""The terminal views say what a finished job is (issue 14, part 7): participants' final states
instead of ``alive 0/4``, a succeeded job without rounds complete instead of ``0/1``, the real
command in captions, one screen of 45 rows for a job of 8 clients, honest sparklines."""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.console import Console

from orchestrator.core import (
    CheckpointRef,
    HistoryEntry,
    Job,
    JobSpec,
    JobStatus,
    ParticipantState,
    Phase,
    new_job,
)
from orchestrator.watch.model import JobDetail, job_summary, spark_scale, sparkline
from orchestrator.watch.render import (
    job_view,
    jobs_table,
    progress_line,
    rendered_height,
    trends_table,
)

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
BLOCKS = "▁▂▃▄▅▆▇█"


def _spec(clients: int, rounds: int, workload: str = "fedavg") -> JobSpec:
    return JobSpec.model_validate({
        "workload": workload, "rounds": rounds, "server": {"worker": "srv"},
        "clients": [{"worker": f"cli{i}"} for i in range(clients)]})


def finished_job(job_id: str, clients: int, *, rounds: int, round_: int,
                 workload: str = "fedavg", failed: tuple[str, ...] = ()) -> Job:
    job = new_job(job_id, _spec(clients, rounds, workload), NOW - timedelta(minutes=5))
    status = JobStatus.FINISHED_WITH_ERROR if failed else JobStatus.FINISHED_SUCCESSFULLY
    participants = {
        pid: replace(p, state=ParticipantState.FAILED if pid in failed
                     else ParticipantState.FINISHED, round=round_,
                     last_seen=NOW - timedelta(minutes=1),
                     metrics={"accuracy": 0.71, "loss": 0.4} if round_ else {})
        for pid, p in job.participants.items()}
    history = [
        HistoryEntry(from_status=None, to_status=JobStatus.NOT_STARTED, at=job.created_at,
                     event_id="e0", reason="submitted"),
        HistoryEntry(from_status=JobStatus.NOT_STARTED, to_status=JobStatus.IN_PROGRESS,
                     at=job.created_at + timedelta(seconds=1), event_id="e1",
                     reason="dispatched"),
        HistoryEntry(from_status=JobStatus.IN_PROGRESS, to_status=status,
                     at=NOW - timedelta(seconds=30), event_id="e2", reason="server finished"),
    ]
    final = CheckpointRef(key=f"jobs/{job_id}/round-{rounds:04d}.npz", round=rounds,
                          participant="server", sha256="a" * 64, size=1234)
    return replace(job, status=status, phase=Phase.DONE, round=round_, participants=participants,
                   started_at=job.created_at + timedelta(seconds=1),
                   finished_at=NOW - timedelta(seconds=30), history=history,
                   final_checkpoint=final, latest_checkpoint=final)


def _metric_rows(job: Job, rounds: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for r in range(1, rounds + 1):
        rows.append({"participant": "server", "round": r,
                     "metrics": {"accuracy": 0.5 + r / 40, "loss": 1.0 / r, "clients": 8.0}})
        for i, pid in enumerate(p for p in job.participants if p != "server"):
            rows.append({"participant": pid, "round": r,
                         "metrics": {"train_loss": 1.0 / r + i / 100, "samples": 600.0 + i,
                                     "val_loss": 1.2 / r, "accuracy": 0.4 + r / 30}})
    return rows


def _checkpoint_rows(job: Job, rounds: int) -> list[dict[str, Any]]:
    return [{"round": r, "participant": "server", "key": f"jobs/{job.id}/round-{r:04d}.npz",
             "size": 1234, "sha256": "b" * 64, "final": r == rounds, "at": NOW}
            for r in range(1, rounds + 1)]


def _text(renderable: Any, *, width: int = 120, height: int = 45) -> str:
    out = Console(width=width, height=height, file=io.StringIO(), record=True,
                  color_system=None)
    out.print(renderable)
    return out.export_text()


def test_a_finished_job_shows_how_its_participants_ended_not_alive_0_of_n() -> None:
    done = finished_job("done", 3, rounds=4, round_=4)
    failed = finished_job("bad", 3, rounds=4, round_=2, failed=("client-1",))
    text = _text(jobs_table([done, failed], NOW), width=200)
    assert "4 finished" in text
    assert "3 finished, 1 failed" in text
    assert "0/4" not in text
    line = progress_line(done, NOW)
    assert "alive 0/4" not in line and "participants 4 finished" in line
    assert job_summary(done, NOW)["participants_alive"] == 0  # the JSON keeps the fact


def test_a_noop_job_that_succeeded_without_rounds_is_complete_not_0_of_1() -> None:
    noop = finished_job("noop", 1, rounds=1, round_=0, workload="noop")
    table = _text(jobs_table([noop], NOW), width=200)
    assert "1/1" in table and "0/1" not in table
    view = _text(job_view(JobDetail(noop, NOW)))
    assert "0/1" not in view and "1/1" in view
    assert "round 1/1" in progress_line(noop, NOW)
    # A job that failed at round 0 still says so.
    failed = finished_job("early", 1, rounds=3, round_=0, failed=("server",))
    assert "0/3" in _text(jobs_table([failed], NOW), width=200)


def test_captions_name_the_real_command_with_the_job_id() -> None:
    job = finished_job("j-caption", 8, rounds=10, round_=10)
    detail = JobDetail(job, NOW, metrics=_metric_rows(job, 10),
                       checkpoints=_checkpoint_rows(job, 10))
    text = _text(job_view(detail), height=200)
    assert "orchestrator checkpoints j-caption" in text
    assert "JOB)" not in text


def test_the_job_view_of_8_clients_and_several_metrics_fits_45_rows() -> None:
    job = finished_job("j8", 8, rounds=20, round_=20)
    detail = JobDetail(job, NOW, metrics=_metric_rows(job, 20),
                       checkpoints=_checkpoint_rows(job, 20))
    full = job_view(detail)
    assert rendered_height(full, 120) <= 45
    text = _text(full)
    for expected in ("client-7", "metrics by round", "clients (mean of 8)", "train_loss",
                     "checkpoints", "server finished"):
        assert expected in text, f"{expected!r} missing:\n{text}"
    # A bigger job still fits one screen when the view is given the screen's size.
    big = finished_job("j30", 30, rounds=20, round_=20)
    big_detail = JobDetail(big, NOW, metrics=_metric_rows(big, 20),
                           checkpoints=_checkpoint_rows(big, 20))
    assert rendered_height(job_view(big_detail), 120) > 45
    fitted = job_view(big_detail, max_rows=45, width=120)
    assert rendered_height(fitted, 120) <= 45
    assert "more (orchestrator status j30 --json)" in _text(fitted)


def test_a_small_wobble_draws_flat_and_the_range_is_shown() -> None:
    wobble = [0.713, 0.716, 0.714, 0.715, 0.713]
    line = sparkline(wobble)
    levels = [BLOCKS.index(c) for c in line]
    assert max(levels) - min(levels) <= 1, line  # not ▁ to █ for a 0.4 % change
    low, high = spark_scale(wobble)
    assert high - low >= 0.05 * 0.716 - 1e-12
    assert sparkline([0.1, 0.5, 0.9]) == "▁▅█"  # a real change still uses the full height
    job = finished_job("jw", 1, rounds=5, round_=5)
    rows = [{"participant": "server", "round": r + 1, "metrics": {"accuracy": v}}
            for r, v in enumerate(wobble)]
    table = trends_table(JobDetail(job, NOW, metrics=rows))
    assert table is not None
    assert "0.713..0.716" in _text(table)
    detail = JobDetail(job, NOW, metrics=rows).as_dict()
    accuracy = detail["metrics"][0]
    assert (accuracy["min"], accuracy["max"]) == (0.713, 0.716)
