"""The daemon's counters as the endpoint labels them (pure: no servers)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, generate_latest

from orchestrator.core import HistoryEntry, JobStatus, new_job
from orchestrator.core.job import JobError
from orchestrator.core.status import ErrorCode
from orchestrator.daemon.stats import Stats, refusal_kind
from orchestrator.health.daemon import DaemonCollector, Samples
from tests.daemon.harness import job_spec

NOW = datetime.now(UTC)


def entry(frm: JobStatus | None, to: JobStatus, rule: str = "a rule") -> HistoryEntry:
    return HistoryEntry(from_status=frm, to_status=to, at=NOW, event_id="e", reason="free text",
                        rule=rule)


def test_transitions_are_labelled_by_cause_from_and_to() -> None:
    stats = Stats()
    job = new_job("j", job_spec("j"), NOW)
    failed = replace(job, error=JobError(code=ErrorCode.WORKER_LOST, message="gone"))
    stats.note_transition(entry(JobStatus.NOT_STARTED, JobStatus.IN_PROGRESS), job)
    stats.note_transition(entry(JobStatus.IN_PROGRESS, JobStatus.FINISHED_WITH_ERROR), failed)
    stats.note_transition(entry(JobStatus.IN_PROGRESS, JobStatus.FINISHED_WITH_ERROR), failed)
    stats.note_transition(entry(None, JobStatus.NOT_STARTED), job)
    assert stats.status_changes == 4
    assert stats.transition_counts() == {
        ("a rule", "dispatched", "NOT_STARTED", "IN_PROGRESS"): 1,
        ("a rule", "worker_lost", "IN_PROGRESS", "FINISHED_WITH_ERROR"): 2,
        ("a rule", "submitted", "none", "NOT_STARTED"): 1,
    }


def test_refusal_reasons_become_a_few_label_values() -> None:
    assert refusal_kind("refused: bad MAC") == "bad MAC"
    assert refusal_kind("refused: checkpoint size mismatch (12 != 13)") == \
        "checkpoint size mismatch"
    assert refusal_kind("refused: forbidden_event: job.dispatched from a worker") == \
        "forbidden_event"
    assert refusal_kind("") == "unknown"
    stats = Stats()
    stats.note_refused(["refused: no MAC", "refused: no MAC", "refused: no run"])
    assert stats.events_refused == 3
    assert stats.refused_by_reason == {"no MAC": 2, "no run": 1}


def test_the_log_line_gets_plain_ints_and_the_collector_the_rest() -> None:
    stats = Stats()
    stats.batch_sizes.observe(25)
    stats.rejected_by_kind["not_json"] += 1
    assert all(isinstance(v, int) for v in stats.as_dict().values())
    assert "transitions" not in stats.as_dict()
    registry = CollectorRegistry()
    registry.register(DaemonCollector(stats, Samples(
        jobs={"IN_PROGRESS": 3}, groups={("ns:events:0", "daemon"): (None, 2)},
        dead_letters=1)))
    text = generate_latest(registry).decode()
    assert 'orchestrator_daemon_dead_lettered_total{kind="not_json"} 1.0' in text
    assert 'orchestrator_jobs{status="IN_PROGRESS"} 3.0' in text
    assert 'orchestrator_daemon_batch_size_bucket{le="50.0"} 1.0' in text
    assert 'orchestrator_stream_pending{group="daemon",stream="ns:events:0"} 2.0' in text
    assert "orchestrator_stream_lag{" not in text  # Redis could not tell: no sample
    assert "orchestrator_dead_letter_entries 1.0" in text
