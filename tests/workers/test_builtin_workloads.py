"""noop, sleep and fail on the in-memory hub."""

from __future__ import annotations

import anyio
import pytest

from orchestrator.errors import WorkloadError
from workers.local import LocalClient, LocalHub, run_local_job


async def test_noop_finishes_at_once_without_checkpoints() -> None:
    result = await run_local_job("noop", clients=2, rounds=3, timeout_s=5)
    assert {o.state for o in result.outcomes.values()} == {"finished"}
    assert result.checkpoints == {}
    assert result.final_checkpoint is None
    assert result.metrics == {}


async def test_sleep_sleeps_and_reports_every_round() -> None:
    started = anyio.current_time()
    result = await run_local_job(
        "sleep", server_config={"seconds": 0.15}, clients=[{"seconds": 0.15}], rounds=3, timeout_s=5
    )
    elapsed_s = anyio.current_time() - started
    assert 0.15 <= elapsed_s < 2
    assert result.rounds_started == [1, 2, 3]
    for participant in ("server", "client-0"):
        metrics = result.metrics[participant]
        assert sorted(metrics) == [1, 2, 3]
        assert metrics[3]["round"] == 3
        assert metrics[1]["elapsed_s"] < metrics[3]["elapsed_s"]


async def test_sleep_with_one_round_reports_nothing() -> None:
    result = await run_local_job("sleep", server_config={"seconds": 0.01}, clients=0, timeout_s=5)
    assert result.succeeded
    assert result.metrics == {}
    assert result.server.result is not None
    assert result.server.result.summary["elapsed_s"] >= 0.01


async def test_sleep_stops_promptly_when_asked() -> None:
    hub = LocalHub("sleep", server_config={"seconds": 60}, clients=[LocalClient({"seconds": 60})])
    with anyio.fail_after(5):  # (a workload that ignores the stop fails here, not at 120 s)
        async with anyio.create_task_group() as tg:
            tg.start_soon(hub.run)
            await anyio.sleep(0.1)
            hub.request_stop("client-0")
            hub.request_stop("server")
            asked_at = anyio.current_time()
    assert anyio.current_time() - asked_at < 1  # the task group waited for both to stop
    assert hub.outcomes["server"].state == "stopped"
    assert hub.outcomes["client-0"].state == "stopped"


async def test_fail_fails_everyone_at_round_one_by_default() -> None:
    with pytest.raises(WorkloadError, match=r"^boom$"):
        await run_local_job("fail", server_config={"message": "boom"}, clients=1, timeout_s=5)
    result = await run_local_job(
        "fail", clients=[{"message": "client boom"}], timeout_s=5, raise_on_error=False
    )
    assert result.server.state == "failed"
    assert str(result.server.error) == "server failed on purpose"
    # the client either failed itself or was stopped because the server failed first
    assert result.outcomes["client-0"].state in {"failed", "stopped"}


async def test_fail_can_target_one_participant_and_round() -> None:
    config = {"participant": "client-1", "at_round": 2, "message": "bad client"}
    result = await run_local_job(
        "fail", server_config=config, clients=[config, config, config], rounds=3, timeout_s=5
    )
    assert result.succeeded
    failed = result.outcomes["client-1"]
    assert failed.state == "failed"
    assert str(failed.error) == "bad client"
    assert sorted(result.metrics["client-1"]) == [1]  # round 1 done, failed at round 2
    assert sorted(result.metrics["client-0"]) == [1, 2, 3]
    assert result.outcomes["client-2"].state == "finished"


async def test_fail_beyond_the_last_round_fails_in_the_last_round() -> None:
    with pytest.raises(WorkloadError, match="late"):
        await run_local_job(
            "fail", server_config={"at_round": 9, "message": "late"}, clients=0, rounds=2
        )


async def test_fail_refuses_a_bad_config() -> None:
    with pytest.raises(WorkloadError, match="at_round"):
        await run_local_job("fail", server_config={"at_round": 0}, clients=0)
    with pytest.raises(WorkloadError, match="participant"):
        await run_local_job("fail", server_config={"participant": 3}, clients=0)
    with pytest.raises(WorkloadError, match="seconds"):
        await run_local_job("sleep", server_config={"seconds": "soon"}, clients=0)
