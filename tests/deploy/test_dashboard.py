"""``deploy/grafana/orchestrator.json``: valid JSON whose queries name only series that the
daemon's and the worker's collectors export (so renaming a metric breaks this test, not the
dashboard)."""

from __future__ import annotations

import json
import re

import anyio

from orchestrator.core import JobStatus
from orchestrator.daemon.stats import Stats
from orchestrator.health import UploadCounters
from orchestrator.health.daemon import DaemonCollector, Samples
from orchestrator.health.worker import WorkerCollector
from tests.deploy.support import DEPLOY


class _Outbox:
    pending, sent, connected = 0, 0, True


class _Agent:
    redis = None
    runs: dict[str, object] = {}
    outbox = _Outbox()
    shutdown_requested = False
    ready = anyio.Event


def exported() -> set[str]:
    samples = Samples(jobs={"NOT_STARTED": 0}, groups={("s", "daemon"): (0, 0)}, dead_letters=0)
    stats = Stats()
    stats.transitions[("a rule", JobStatus.IN_PROGRESS, JobStatus.FINISHED_SUCCESSFULLY, None)] = 1
    stats.refused_by_reason["bad MAC"] += 1
    stats.rejected_by_kind["not_json"] += 1
    names: set[str] = set()
    for collector in (DaemonCollector(stats, samples),
                      WorkerCollector(_Agent(), UploadCounters())):  # type: ignore[arg-type]
        for family in collector.collect():
            names |= {s.name for s in family.samples}
    return names


def test_dashboard_queries_name_exported_series() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "orchestrator.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 12
    names = exported()
    used = {n for e in exprs for n in re.findall(r"\borchestrator_[a-z_]+\b", e)}
    assert used, "the dashboard queries nothing of ours"
    assert used <= names, sorted(used - names)
    for needed in ("orchestrator_jobs", "orchestrator_stream_lag",
                   "orchestrator_daemon_commit_seconds_bucket",
                   "orchestrator_worker_checkpoint_bytes_total"):
        assert needed in used
