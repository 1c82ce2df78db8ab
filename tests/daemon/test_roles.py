"""A participant naming a live worker of the other role fails its job at once (not at the start
deadline), through ``decide``, with a reason naming the worker and its role."""

from __future__ import annotations

from datetime import timedelta

import anyio

from orchestrator.bus import Bus, Entry, Redis
from orchestrator.bus.keys import Keys
from orchestrator.core import ErrorCode, JobDispatched, JobStatus, JobUnschedulable, new_job
from orchestrator.daemon.admission import plan_dispatch
from orchestrator.daemon.events import parse_event
from orchestrator.daemon.rejections import Refusal
from orchestrator.daemon.stats import utcnow
from orchestrator.store import MemoryJobStore
from tests.daemon.harness import (
    SimWorker,
    daemon_running,
    fast_options,
    job_spec,
    running,
    wait_finished,
    wait_for_job,
)

START_S = 60.0  # far beyond what the tests wait: a refusal must not come from the deadline


def test_plan_dispatch_refuses_a_live_worker_of_the_other_role() -> None:
    job = new_job("j", job_spec("j", clients=2, min_clients=1), utcnow())
    wrong_server = plan_dispatch(job, {"srv": {"role": "client"}, "cli0": {"role": "client"},
                                       "cli1": {"role": "client"}})
    assert isinstance(wrong_server, JobUnschedulable)
    assert (wrong_server.participant, wrong_server.worker) == ("server", "srv")
    assert wrong_server.message == ("worker srv is registered as a client worker and cannot "
                                    "run server, whose role is server")
    # A client naming a server worker: refused too, even though min_clients would allow a skip.
    wrong_client = plan_dispatch(job, {"srv": {"role": "server"}, "cli0": {"role": "client"},
                                       "cli1": {"role": "server"}})
    assert isinstance(wrong_client, JobUnschedulable)
    assert wrong_client.message == ("worker cli1 is registered as a server worker and cannot "
                                    "run client-1, whose role is client")
    # The other role's worker absent: wait as before; "any" and no role run anything.
    assert plan_dispatch(job, {"cli0": {"role": "client"}}) == "worker 'srv' is not registered"
    ok = plan_dispatch(job, {"srv": {"role": "any"}, "cli0": {}, "cli1": {"role": "client"}})
    assert isinstance(ok, JobDispatched)


def test_a_job_unschedulable_event_from_the_bus_is_a_forgery() -> None:
    event = JobUnschedulable(event_id="u", job_id="j", participant="server", worker="srv",
                             message="forged")
    refusal = parse_event(Entry("ns:events:{0}", "1-0", {"event": event.model_dump_json()}),
                          "ns:control")
    assert isinstance(refusal, Refusal)
    assert refusal.kind == "forbidden_event"
    assert refusal.reason == ("job.unschedulable events are produced by the daemon only, not "
                              "accepted from the bus")


async def test_a_server_named_on_a_client_worker_fails_at_intake(redis: Redis, keys: Keys
                                                                 ) -> None:
    store = MemoryJobStore()
    impostor = SimWorker(redis, keys, "srv", "client")
    client = SimWorker(redis, keys, "cli0", "client")
    async with daemon_running(store, redis, fast_options(keys.namespace)) as daemon, \
            running(impostor.run, client.run):
        await Bus(redis, keys).submit(job_spec("wrong", clients=1, rounds=1,
                                               start_s=START_S).model_dump_json())
        job = await wait_finished(store, "wrong", timeout_s=10)
        stats = daemon.stats
    assert job.status is JobStatus.FINISHED_WITH_ERROR
    assert job.error is not None and job.error.code is ErrorCode.CANNOT_SCHEDULE
    assert job.error.participant == "server"
    assert job.error.message == ("worker srv is registered as a client worker and cannot run "
                                 "server, whose role is server")
    assert job.finished_at is not None
    assert job.finished_at - job.created_at < timedelta(seconds=5)
    assert [(h.from_status, h.to_status, h.reason) for h in job.history] == [
        (None, JobStatus.NOT_STARTED, "submitted"),
        (JobStatus.NOT_STARTED, JobStatus.FINISHED_WITH_ERROR, "cannot schedule")]
    assert not impostor.started_runs and not client.started_runs, "nothing was started"
    assert stats.dispatched == 0


async def test_a_waiting_job_fails_once_admission_sees_the_wrong_role(redis: Redis, keys: Keys
                                                                      ) -> None:
    """No worker alive at submission: the job waits; when its client's worker turns up as a
    server worker, admission fails the job at once."""
    store = MemoryJobStore()
    server = SimWorker(redis, keys, "srv", "server")
    wrong = SimWorker(redis, keys, "cli0", "server")
    async with daemon_running(store, redis, fast_options(keys.namespace)):
        await Bus(redis, keys).submit(job_spec("later", clients=1, rounds=1,
                                               start_s=START_S).model_dump_json())
        queued = await wait_for_job(store, "later", lambda j: True)
        assert queued.status is JobStatus.NOT_STARTED
        with anyio.fail_after(10):
            async with running(server.run, wrong.run):
                job = await wait_finished(store, "later", timeout_s=10)
    assert job.status is JobStatus.FINISHED_WITH_ERROR
    assert job.error is not None and job.error.code is ErrorCode.CANNOT_SCHEDULE
    assert job.error.participant == "client-0"
    assert job.error.message == ("worker cli0 is registered as a server worker and cannot run "
                                 "client-0, whose role is client")
    assert job.finished_at is not None
    assert job.finished_at - job.created_at < timedelta(seconds=START_S / 2)
    assert not server.started_runs and not wrong.started_runs
