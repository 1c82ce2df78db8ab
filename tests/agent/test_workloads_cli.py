"""``orchestrator workloads``: what live workers advertise, with their config schemas."""

from __future__ import annotations

import json

from orchestrator.bus import Redis
from orchestrator.bus.keys import Keys
from orchestrator.cli.workloads import offered
from orchestrator.core.status import Role
from orchestrator.storage import ObjectStore
from tests.agent.support import running_agent
from tests.helpers import run_cli


async def test_a_live_worker_advertises_its_workloads_and_the_cli_lists_them(
        redis: Redis, keys: Keys, memory_store: ObjectStore, tmp_env: dict[str, str]) -> None:
    env = {**tmp_env, "ORCHESTRATOR_NAMESPACE": keys.namespace}
    async with running_agent(redis, keys, memory_store, role=Role.CLIENT) as agent:
        raw = await redis.get(keys.worker_alive(agent.config.name))
        assert raw is not None
        advertised = json.loads(raw)["workloads"]
        assert {"fedavg", "noop", "sleep", "fail"} <= set(advertised)
        assert "epochs" in advertised["fedavg"]["client_config"]["properties"]
        listed = run_cli("workloads", "--json", env=env)
        text = run_cli("workloads", env=env)
    assert listed.returncode == 0, listed.stderr
    found = json.loads(listed.stdout)["workloads"]
    assert found["fedavg"]["workers"] == [{"name": agent.config.name, "role": "client"}]
    assert "test_samples" in found["fedavg"]["server_config"]["properties"]
    assert text.returncode == 0, text.stderr
    assert f"fedavg (version 1): {agent.config.name} (client)" in text.stdout
    assert "client options: seed, features, classes, samples, epochs" in text.stdout


def test_offered_merges_the_workers_of_one_workload() -> None:
    alive = {"a": {"role": "server", "workloads": {"x": {"version": "2"}}},
             "b": {"role": "client", "workloads": {"x": {"version": "2"}, "y": {}}},
             "c": {"role": "client"}}
    found = offered(alive)
    assert [w["name"] for w in found["x"]["workers"]] == ["a", "b"]
    assert found["x"]["version"] == "2" and list(found) == ["x", "y"]
