"""Whole Flower jobs in memory (``workers.local``): the example app unchanged, a lost client
while ``min_clients`` holds and when it does not, Flower errors on the server and on a client,
the legacy ``ServerApp(server_fn=...)`` API, bad app references, and Flower not installed."""

from __future__ import annotations

import io
import sys

import anyio
import numpy as np
import pytest

pytest.importorskip("flwr")

from orchestrator.core.status import Role
from orchestrator.errors import WorkloadError
from workers.local import LocalHub, LocalJobResult, run_local_job
from workers.registry import ConfigError, validate_config
from workers.workloads.flower import INSTALL_HINT, flower
from workers.workloads.flower.loading import require_flower

EXAMPLE_SERVER = {"app": "flower_app.server_app:app"}
EXAMPLE_CLIENT = {"app": "flower_app.client_app:app"}


async def test_the_example_app_runs_with_metrics_and_a_checkpoint_every_round() -> None:
    result = await run_local_job(flower, server_config=EXAMPLE_SERVER,
                                 clients=[EXAMPLE_CLIENT] * 3, rounds=3, timeout_s=60)
    assert result.succeeded, result.server
    server = result.metrics["server"]
    for round_ in (1, 2, 3):
        row = server[round_]  # the strategy's aggregates, the server-side evaluation, counts
        assert {"train_loss", "evaluate_loss", "evaluate_accuracy", "loss", "accuracy"} <= set(row)
        assert row["train_replies"] == 3 and row["evaluate_replies"] == 3
        for client in ("client-0", "client-1", "client-2"):
            assert {"train_loss", "evaluate_accuracy"} <= set(result.metrics[client][round_])
    assert server[0]["accuracy"] < server[3]["accuracy"]  # the model learned
    assert server[3]["loss"] < server[1]["loss"]
    assert sorted(r.round for r in result.checkpoint_records) == [1, 2, 3]
    assert result.final_checkpoint is not None and "/checkpoints/3/" in result.final_checkpoint
    final = result.final_checkpoint_bytes
    assert final is not None
    with np.load(io.BytesIO(final), allow_pickle=False) as npz:
        assert sorted(npz.files) == ["b", "w"] and npz["w"].shape == (10,)


async def _run_losing(lost: str, min_clients: int) -> LocalJobResult:
    """The example app with ``lost`` killed at round 2 and the server told, as the daemon
    tells it when a worker is lost."""
    hub = LocalHub(flower, server_config={**EXAMPLE_SERVER, "run_config": {"min-nodes": 1}},
                   clients=[EXAMPLE_CLIENT] * 3, rounds=4, min_clients=min_clients,
                   kill_at_round={lost: 2})

    async def membership() -> None:
        while lost not in hub.outcomes:
            await anyio.sleep(0.01)
        hub.context("server").note_gone([lost], "worker lost")

    async with anyio.create_task_group() as tg:
        tg.start_soon(membership)
        result = await hub.run(timeout_s=60)
    return result


async def test_a_lost_client_is_left_behind_while_min_clients_holds() -> None:
    result = await _run_losing("client-2", min_clients=2)
    assert result.succeeded, result.server
    assert result.outcomes["client-2"].state == "killed"
    server = result.metrics["server"]
    assert server[2].get("train_failures", 0) + server[2]["train_replies"] == 3
    assert server[4]["train_replies"] == 2 and "train_failures" not in server[4]
    assert sorted(r.round for r in result.checkpoint_records) == [1, 2, 3, 4]


async def test_a_lost_client_fails_the_server_when_min_clients_breaks() -> None:
    result = await _run_losing("client-2", min_clients=3)
    assert result.server.state == "failed"
    assert "only 2 of 3 clients are left (min_clients=3)" in str(result.server.error)


async def test_a_serverapp_error_fails_the_server_with_flowers_message() -> None:
    result = await LocalHub(flower, server_config={"app": "tests.flower.apps:failing_server"},
                            clients=[EXAMPLE_CLIENT] * 2).run(timeout_s=60)
    assert result.server.state == "failed"
    assert str(result.server.error) == ("the Flower ServerApp raised RuntimeError: the strategy "
                                        "broke in round 1")
    told = result.outcomes["client-0"].result
    assert told is not None and told.summary["aborted"] == 1.0  # told, not left waiting


async def test_a_clientapp_error_is_an_error_reply_and_the_strategy_goes_on() -> None:
    result = await run_local_job(
        flower, server_config=EXAMPLE_SERVER, rounds=2, timeout_s=60,
        clients=[{"app": "tests.flower.apps:failing_client"}] * 3)
    assert result.succeeded, result.server
    assert result.metrics["server"][2]["train_failures"] == 1
    assert result.metrics["server"][2]["train_replies"] == 2
    assert result.metrics["client-0"][1]["train_failures"] == 1


async def test_a_legacy_server_fn_app_runs_with_a_checkpoint_every_round() -> None:
    result = await run_local_job(
        flower, server_config={"app": "tests.flower.apps:legacy_server"}, rounds=2,
        clients=[{"app": "tests.flower.apps:legacy_client"}] * 2, timeout_s=60)
    assert result.succeeded, result.server
    assert sorted(r.round for r in result.checkpoint_records) == [1, 2]
    assert {"train_loss", "evaluate_accuracy"} <= set(result.metrics["client-1"][2])


@pytest.mark.parametrize(("app", "message"), [
    ("flower_app.no_such_module:app", "cannot import 'flower_app.no_such_module'"),
    ("flower_app.server_app:nothing", "has no attribute 'nothing'"),
    ("flower_app.client_app:app", "is a ClientApp, not a Flower ServerApp"),
])
async def test_a_bad_app_reference_fails_the_server_saying_why(app: str, message: str) -> None:
    result = await LocalHub(flower, server_config={"app": app},
                            clients=[EXAMPLE_CLIENT]).run(timeout_s=60)
    assert result.server.state == "failed"
    assert message in str(result.server.error)


def test_the_config_models_check_the_app_reference() -> None:
    assert validate_config("flower", Role.CLIENT, EXAMPLE_CLIENT)["idle_timeout_s"] == 3600.0
    with pytest.raises(ConfigError, match="app"):
        validate_config("flower", Role.SERVER, {"app": "no colon here"})
    with pytest.raises(ConfigError, match="run_config"):
        validate_config("flower", Role.SERVER, {**EXAMPLE_SERVER, "run_config": {"x": [1]}})


def test_without_flower_the_workload_says_how_to_install_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "flwr", None)  # as if flwr were not installed
    with pytest.raises(WorkloadError, match="pip install 'orchestrator\\[flower\\]'"):
        require_flower()
    assert INSTALL_HINT == "pip install 'orchestrator[flower]'"


async def test_a_stop_request_stops_the_serverapp_mid_round() -> None:
    hub = LocalHub(flower, server_config=EXAMPLE_SERVER, rounds=20,
                   clients=[{"app": "tests.flower.apps:slow_client"}] * 2)

    async def stop_in_round_2() -> None:
        while 2 not in hub.rounds_started:
            await anyio.sleep(0.01)
        hub.request_stop("server")  # as a cancel does

    async with anyio.create_task_group() as tg:
        tg.start_soon(stop_in_round_2)
        result = await hub.run(timeout_s=60)
    assert result.server.state == "stopped", result.server
    assert max(hub.rounds_started) < 20
    assert {o.state for o in result.outcomes.values()} == {"stopped"}
