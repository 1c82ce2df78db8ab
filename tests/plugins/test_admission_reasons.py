"""Admission names the problem: which worker is not registered, has the wrong role or does not
offer the workload; a job that waits past its start deadline fails with that reason."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from orchestrator.bus import Bus, Redis
from orchestrator.bus.keys import Keys
from orchestrator.cli.submit import worker_warnings
from orchestrator.core import (
    DeadlineExpired,
    ErrorCode,
    JobDispatched,
    JobStatus,
    JobUnschedulable,
    decide,
    new_job,
)
from orchestrator.core.suitability import Unsuitable, describe_problems
from orchestrator.daemon.admission import plan_dispatch, wait_reason
from orchestrator.daemon.reaper import expired_events
from orchestrator.daemon.stats import utcnow
from orchestrator.store import MemoryJobStore
from tests.daemon.harness import (
    SimWorker,
    daemon_running,
    fast_options,
    job_spec,
    running,
    wait_finished,
)


def offering(role: str, *names: str) -> dict[str, Any]:
    """Registration info of a worker that advertises ``names``."""
    return {"role": role, "workloads": {n: {"version": "1"} for n in names}}


def test_an_unregistered_worker_is_named_and_the_job_waits() -> None:
    job = new_job("j", job_spec("j", clients=2), utcnow())
    plan = plan_dispatch(job, {"srv": offering("server", "noop"),
                               "cli0": offering("client", "noop")})
    assert plan == ("worker 'cli1' is not registered (1 of 2 required client workers "
                    "available)")
    assert plan_dispatch(job, {}) == ("worker 'srv' is not registered; worker 'cli0' is not "
                                      "registered; worker 'cli1' is not registered (0 of 2 "
                                      "required client workers available)")


def test_a_missing_server_is_named_but_skippable_clients_are_not() -> None:
    job = new_job("j", job_spec("j", clients=2, min_clients=1), utcnow())
    assert plan_dispatch(job, {"cli0": offering("client", "noop")}) == (
        "worker 'srv' is not registered")


def test_a_live_worker_without_the_workload_fails_the_job_at_once() -> None:
    job = new_job("j", job_spec("j", clients=2, min_clients=1, workload="linreg"), utcnow())
    plan = plan_dispatch(job, {"srv": offering("server", "linreg"),
                               "cli0": offering("client", "linreg"),
                               "cli1": offering("client", "noop", "fedavg")})
    assert isinstance(plan, JobUnschedulable)
    assert (plan.participant, plan.worker) == ("client-1", "cli1")
    assert plan.message == ("worker 'cli1' does not offer workload 'linreg' (it offers: "
                            "fedavg, noop)")
    # Even though min_clients would let client-1 be skipped: as with the wrong role.
    decision = decide(job, [plan], utcnow())
    assert decision.job.status is JobStatus.FINISHED_WITH_ERROR
    assert decision.job.error is not None
    assert decision.job.error.code is ErrorCode.CANNOT_SCHEDULE
    assert decision.job.error.message == plan.message


def test_a_registration_without_a_workload_list_offers_any_workload() -> None:
    job = new_job("j", job_spec("j", clients=1, workload="anything"), utcnow())
    plan = plan_dispatch(job, {"srv": {"role": "server"}, "cli0": {"role": "client"}})
    assert isinstance(plan, JobDispatched)
    assert wait_reason(job, {"srv": {"role": "server"}, "cli0": {"role": "client"}}) is None


def test_every_suitable_worker_dispatches() -> None:
    job = new_job("j", job_spec("j", clients=2, workload="linreg"), utcnow())
    alive = {"srv": offering("server", "linreg"), "cli0": offering("client", "linreg"),
             "cli1": offering("any", "linreg", "noop")}
    plan = plan_dispatch(job, alive)
    assert isinstance(plan, JobDispatched)
    assert set(plan.assignments) == {"server", "client-0", "client-1"}


def test_a_long_reason_names_five_problems_and_counts_the_rest() -> None:
    problems = [Unsuitable(f"client-{i}", f"w{i}", f"worker 'w{i}' is not registered", False)
                for i in range(8)]
    assert describe_problems(problems) == (
        "worker 'w0' is not registered; worker 'w1' is not registered; worker 'w2' is not "
        "registered; worker 'w3' is not registered; worker 'w4' is not registered; and 3 more")


def test_the_start_deadline_carries_the_reason_into_the_error() -> None:
    now = utcnow()
    job = new_job("j", job_spec("j", clients=1, start_s=5), now)
    later = now + timedelta(seconds=6)
    events = expired_events([job], later, {"j": "worker 'clinet-1' is not registered"})
    assert [e.message for e in events] == ["worker 'clinet-1' is not registered"]
    decision = decide(job, events, later)
    assert decision.job.status is JobStatus.FINISHED_WITH_ERROR
    assert decision.job.error is not None
    assert decision.job.error.code is ErrorCode.CANNOT_SCHEDULE
    assert decision.job.error.message == ("worker 'clinet-1' is not registered; gave up after "
                                          "the start timeout of 5s")
    # Without a reason (an older daemon's event): the generic words.
    plain = DeadlineExpired(event_id="d", job_id="j", kind="start")
    error = decide(job, [plain], later).job.error
    assert error is not None
    assert error.message == "workers not available; gave up after the start timeout of 5s"


def test_submit_warns_about_each_worker_once() -> None:
    spec = job_spec("j", clients=3, workload="linreg", start_s=30)
    spec = spec.model_copy(update={"clients": [*spec.clients[:2], spec.clients[0]]})
    alive = {"srv": offering("server", "noop"), "cli0": offering("client", "linreg")}
    assert worker_warnings(spec, alive) == [
        "warning: worker 'srv' does not offer workload 'linreg' (it offers: noop): the daemon "
        "will refuse the job (cannot_schedule)",
        "warning: worker 'cli1' is not registered now: the job waits for it for at most its "
        "start timeout (30s)",
    ]
    ok = {"srv": offering("server", "linreg"), "cli0": offering("client", "linreg"),
          "cli1": offering("client", "linreg")}
    assert worker_warnings(spec, ok) == []


@pytest.mark.fault("a job naming an unregistered worker", invariants=(1, 8))
async def test_a_job_naming_an_unregistered_worker_fails_at_its_start_deadline_naming_it(
        redis: Redis, keys: Keys) -> None:
    store = MemoryJobStore()
    server = SimWorker(redis, keys, "srv", "server")
    client = SimWorker(redis, keys, "cli0", "client")
    spec = job_spec("typo", clients=2, rounds=1, start_s=1.5)
    spec = spec.model_copy(update={"clients": [spec.clients[0],
                                               spec.clients[1].model_copy(
                                                   update={"worker": "clinet-1"})]})
    async with daemon_running(store, redis, fast_options(keys.namespace)), \
            running(server.run, client.run):
        await Bus(redis, keys).submit(spec.model_dump_json())
        job = await wait_finished(store, "typo", timeout_s=15)
    assert job.status is JobStatus.FINISHED_WITH_ERROR
    assert job.error is not None and job.error.code is ErrorCode.CANNOT_SCHEDULE
    assert job.error.message == ("worker 'clinet-1' is not registered (1 of 2 required client "
                                 "workers available); gave up after the start timeout of 1.5s")
    assert not server.started_runs and not client.started_runs


async def test_a_live_worker_lacking_the_workload_fails_the_job_at_once(
        redis: Redis, keys: Keys) -> None:
    store = MemoryJobStore()
    bus = Bus(redis, keys)
    await bus.register_worker("srv", "server", ttl_s=30, info={"workloads": {"linreg": {}}})
    await bus.register_worker("cli0", "client", ttl_s=30, info={"workloads": {"noop": {}}})
    async with daemon_running(store, redis, fast_options(keys.namespace)):
        await bus.submit(job_spec("lacks", clients=1, rounds=1, workload="linreg",
                                  start_s=60).model_dump_json())
        job = await wait_finished(store, "lacks", timeout_s=10)
    assert job.status is JobStatus.FINISHED_WITH_ERROR
    assert job.error is not None and job.error.code is ErrorCode.CANNOT_SCHEDULE
    assert job.error.participant == "client-0"
    assert job.error.message == ("worker 'cli0' does not offer workload 'linreg' (it offers: "
                                 "noop)")
    assert job.finished_at is not None
    assert job.finished_at - job.created_at < timedelta(seconds=30), "not the start deadline"
