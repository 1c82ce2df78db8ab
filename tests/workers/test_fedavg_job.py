"""fedavg end to end on the in-memory hub: learning, data files, determinism, k-of-n."""

from __future__ import annotations

import io
import time
from pathlib import Path

import anyio
import numpy as np
import pytest

from orchestrator.errors import WorkloadError
from workers.local import LocalClient, LocalHub, run_local_job
from workers.registry import get_workload
from workers.sdk import WorkloadContext, WorkloadResult
from workers.workloads.fedavg import evaluate, fedavg, make_synthetic, model_from_npz

FAST = {"round_timeout_s": 0.3}


def test_the_package_registers_its_workload_under_fedavg() -> None:
    assert get_workload("fedavg") is fedavg
    assert fedavg.__module__ == "workers.workloads.fedavg"  # the name a re-registration checks


async def test_three_clients_five_rounds_learn_on_synthetic_data() -> None:
    started = time.process_time()
    result = await run_local_job("fedavg", clients=3, rounds=5, timeout_s=30)
    cpu_s = time.process_time() - started
    assert cpu_s < 2.0, f"a 5-round, 3-client fedavg took {cpu_s:.2f}s of CPU"

    assert result.succeeded
    assert {p: o.state for p, o in result.outcomes.items()} == {
        "server": "finished",
        "client-0": "finished",
        "client-1": "finished",
        "client-2": "finished",
    }
    server = result.metrics["server"]
    assert sorted(server) == [1, 2, 3, 4, 5]
    assert all(server[r]["clients"] == 3 for r in server)
    assert server[5]["accuracy"] > 0.8  # chance is 1/4
    assert server[5]["loss"] < server[1]["loss"]
    for client in ("client-0", "client-1", "client-2"):
        metrics = result.metrics[client]
        assert sorted(metrics) == [1, 2, 3, 4, 5]
        assert set(metrics[1]) == {"loss", "accuracy", "samples"}
        assert metrics[5]["loss"] < metrics[1]["loss"] or metrics[5]["accuracy"] > 0.8
    assert result.rounds_started == [1, 2, 3, 4, 5]

    # one checkpoint per round, each saved once; the last round's is the final one
    records = result.checkpoint_records
    assert len(result.checkpoints) == 5
    assert [r.round for r in records] == [1, 2, 3, 4, 5]
    assert [r.final for r in records] == [False] * 4 + [True]
    assert len({r.key for r in records}) == 5
    final = result.final_checkpoint_bytes
    assert final is not None and result.final_checkpoint == records[-1].key
    with np.load(io.BytesIO(final), allow_pickle=False) as archive:
        assert archive["W"].shape == (12, 4)
        assert archive["b"].shape == (4,)
    # final == last round's model: it scores exactly that round's metrics on the held-out set
    held_out = make_synthetic(0, samples=1000)
    assert evaluate(model_from_npz(final), held_out.x, held_out.y) == (
        server[5]["loss"],
        server[5]["accuracy"],
    )
    assert result.server.result is not None
    assert result.server.result.summary["accuracy"] == server[5]["accuracy"]


async def test_trains_from_npz_and_csv_files(tmp_path: Path) -> None:
    paths: list[str | LocalClient] = []
    for index, suffix in enumerate(["npz", "csv", "npz"]):
        shard = make_synthetic(11, client_index=index, client_count=3, features=6, classes=3)
        path = tmp_path / f"client-{index}.{suffix}"
        if suffix == "npz":
            np.savez(path, x=shard.x, y=shard.y)
        else:
            np.savetxt(path, np.column_stack([shard.x, shard.y]), delimiter=",", fmt="%.17g")
        paths.append(str(path))
    held_out = make_synthetic(11, samples=600, features=6, classes=3)
    test_path = tmp_path / "test.npz"
    np.savez(test_path, x=held_out.x, y=held_out.y)

    result = await run_local_job(
        "fedavg", server_data_path=str(test_path), clients=paths, rounds=3, timeout_s=30
    )
    assert result.metrics["server"][3]["accuracy"] > 0.7  # chance is 1/3
    assert result.metrics["client-1"][3]["samples"] == 500
    final = result.final_checkpoint_bytes
    assert final is not None
    assert model_from_npz(final).weights.shape == (6, 3)


async def test_same_seed_gives_the_same_model() -> None:
    async def final_model(seed: int) -> bytes:
        config = {"seed": seed}
        result = await run_local_job(
            "fedavg", server_config=config, clients=[config] * 3, rounds=3, timeout_s=30
        )
        assert result.final_checkpoint_bytes is not None
        return result.final_checkpoint_bytes

    first, second, other = await final_model(5), await final_model(5), await final_model(6)
    a, b, c = model_from_npz(first), model_from_npz(second), model_from_npz(other)
    np.testing.assert_array_equal(a.weights, b.weights)
    np.testing.assert_array_equal(a.bias, b.bias)
    assert not np.array_equal(a.weights, c.weights)


async def test_k_of_n_completes_without_a_killed_client() -> None:
    result = await run_local_job(
        "fedavg",
        server_config=FAST,
        clients=3,
        rounds=5,
        min_clients=2,
        kill_at_round={"client-1": 2},
        timeout_s=30,
    )
    assert result.succeeded
    assert result.outcomes["client-1"].state == "killed"
    assert result.outcomes["client-0"].state == result.outcomes["client-2"].state == "finished"
    clients_per_round = [result.metrics["server"][r]["clients"] for r in range(1, 6)]
    assert clients_per_round == [3, 2, 2, 2, 2]
    assert sorted(result.metrics["client-1"]) == [1]
    assert result.metrics["server"][5]["accuracy"] > 0.8
    assert len(result.checkpoints) == 5


async def test_k_of_n_fails_naming_the_missing_client() -> None:
    with pytest.raises(WorkloadError, match=r"min_clients=3.*missing: client-1 \(none within"):
        await run_local_job(
            "fedavg",
            server_config=FAST,
            clients=3,
            rounds=5,
            min_clients=3,
            kill_at_round={"client-1": 2},
            timeout_s=30,
        )


async def test_a_failed_server_stops_the_other_clients() -> None:
    result = await run_local_job(
        "fedavg",
        server_config=FAST,
        clients=3,
        rounds=5,
        kill_at_round={"client-2": 3},
        timeout_s=30,
        raise_on_error=False,
    )
    assert result.server.state == "failed"
    assert "round 3" in str(result.server.error)
    assert "missing: client-2" in str(result.server.error)
    assert result.final_checkpoint is None
    assert len(result.checkpoints) == 2
    # the server told the clients to give up (or the hub stopped them): nobody is left failed
    assert {result.outcomes[c].state for c in ("client-0", "client-1")} <= {"finished", "stopped"}


async def _straggling_fedavg(ctx: WorkloadContext) -> WorkloadResult | None:
    """client-2 answers round 1 too late (after the server moved on), then behaves."""
    if ctx.participant != "client-2":
        return await fedavg(ctx)
    while True:
        message = await ctx.receive(timeout_s=5)
        if message.body["type"] == "done":
            return None
        round_ = message.body["round"]
        if round_ == 1:
            await anyio.sleep(2.5)  # well past the server's round timeout
        reply = {"type": "update", "round": round_, "model": message.body["model"], "samples": 10}
        await ctx.send("server", reply)


async def test_late_updates_for_an_old_round_are_ignored() -> None:
    result = await run_local_job(
        _straggling_fedavg,
        # (a timeout a loaded machine still meets for the two clients that answer at once)
        server_config={"round_timeout_s": 1.0},
        clients=3,
        rounds=4,
        min_clients=2,
        timeout_s=30,
    )
    assert result.succeeded
    clients = [result.metrics["server"][r]["clients"] for r in range(1, 5)]
    assert clients[0] == 2
    assert all(count in (2, 3) for count in clients[1:])


async def test_a_client_gives_up_when_the_server_is_silent() -> None:
    async def silent_server(ctx: WorkloadContext) -> WorkloadResult | None:
        if ctx.participant == "server":
            return None
        return await fedavg(ctx)

    hub = LocalHub(silent_server, clients=[LocalClient(config={"idle_timeout_s": 0.1})])
    result = await hub.run(timeout_s=10)
    outcome = result.outcomes["client-0"]
    assert outcome.state == "failed"
    assert isinstance(outcome.error, WorkloadError)
    assert "no message from the server for 0.1s" in str(outcome.error)


async def test_a_client_with_incompatible_data_fails_clearly() -> None:
    result = await run_local_job(
        "fedavg",
        server_config=FAST,
        clients=[{}, {"features": 5}],
        rounds=2,
        min_clients=1,
        timeout_s=30,
    )
    assert result.succeeded
    outcome = result.outcomes["client-1"]
    assert outcome.state == "failed"
    assert "12 features" in str(outcome.error)
    assert "5 features" in str(outcome.error)
    assert [result.metrics["server"][r]["clients"] for r in (1, 2)] == [1, 1]


async def test_resumes_from_an_initial_checkpoint() -> None:
    store: dict[str, bytes] = {}
    first = await run_local_job("fedavg", clients=2, rounds=1, store=store, timeout_s=30)
    resumed = await run_local_job(
        "fedavg",
        server_config={"initial_checkpoint": first.final_checkpoint},
        clients=2,
        rounds=1,
        store=store,
        timeout_s=30,
    )
    assert resumed.metrics["server"][1]["loss"] < first.metrics["server"][1]["loss"]


async def test_min_round_s_paces_every_round_but_the_last() -> None:
    """``demo --ui`` paces rounds so that a dashboard's charts fill while one watches."""
    began = anyio.current_time()
    result = await run_local_job("fedavg", clients=1, rounds=3, timeout_s=30,
                                 server_config={**FAST, "min_round_s": 0.3})
    elapsed_s = anyio.current_time() - began
    assert result.succeeded and result.rounds_started == [1, 2, 3]
    assert elapsed_s >= 0.6  # rounds 1 and 2 paced; the last round ends the job at once
