"""A real worker agent checks a participant's config against its workload's model before
running it: a bad one fails the participant at once, naming the field; a good one reaches the
workload with its defaults filled in."""

from __future__ import annotations

from orchestrator.bus import Redis
from orchestrator.bus.keys import Keys
from orchestrator.core.status import ErrorCode, Role
from orchestrator.storage import ObjectStore
from tests.agent.support import FakeDaemon, running_agent


async def test_a_bad_config_fails_the_participant_at_once_naming_the_field(
    redis: Redis, keys: Keys, memory_store: ObjectStore, daemon: FakeDaemon
) -> None:
    async with running_agent(redis, keys, memory_store) as agent:
        typo = await daemon.start(agent.config.name, workload="sleep", config={"secnds": 30})
        failed = await daemon.wait_terminal(typo, timeout_s=5)
        good = await daemon.start(agent.config.name, workload="sleep", config={"seconds": 0.05})
        finished = await daemon.wait_terminal(good)
    assert failed.type == "participant.failed" and failed.code is ErrorCode.INVALID_SPEC
    assert "invalid server config for workload 'sleep'" in failed.message
    assert "secnds: Extra inputs are not permitted" in failed.message
    assert daemon.types(typo.job_id) == ["participant.failed"], "the workload never ran"
    assert finished.type == "participant.finished"


async def test_a_client_config_is_checked_against_the_client_model(
    redis: Redis, keys: Keys, memory_store: ObjectStore, daemon: FakeDaemon
) -> None:
    async with running_agent(redis, keys, memory_store, role=Role.CLIENT) as agent:
        start = await daemon.start(agent.config.name, workload="fedavg", role=Role.CLIENT,
                                   participant="client-0", config={"test_samples": 10})
        failed = await daemon.wait_terminal(start, timeout_s=5)
    assert failed.code is ErrorCode.INVALID_SPEC
    assert "invalid client config for workload 'fedavg'" in failed.message
    assert "test_samples" in failed.message
