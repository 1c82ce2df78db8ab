"""Intake's view of worker liveness: alive workers are trusted for a second, absent ones are
looked up again at once."""

from __future__ import annotations

import anyio

from orchestrator.bus import Bus, Keys, Redis
from orchestrator.daemon.liveness import Liveness
from orchestrator.daemon.retry import Retrier
from orchestrator.daemon.stats import Stats


def _liveness(redis: Redis, keys: Keys, max_age_s: float) -> tuple[Bus, Liveness]:
    bus = Bus(redis, keys)
    retry = Retrier(Stats(), anyio.Event(), lambda: None)
    return bus, Liveness(bus, retry, max_age_s=max_age_s)


async def test_alive_workers_are_trusted_for_max_age_then_read_again(
        redis: Redis, keys: Keys) -> None:
    bus, liveness = _liveness(redis, keys, max_age_s=0.3)
    await bus.register_worker("w1", "server", ttl_s=30, info={"slots": 2})
    alive = await liveness.alive(["w1", "w2"])
    assert set(alive) == {"w1"}
    assert (alive["w1"]["role"], alive["w1"]["slots"]) == ("server", 2)
    await bus.unregister_worker("w1")
    assert set(await liveness.alive(["w1"])) == {"w1"}, "seen alive a moment ago: trusted"
    await anyio.sleep(0.35)
    assert await liveness.alive(["w1"]) == {}, "read again after max_age"


async def test_an_absent_worker_is_found_as_soon_as_it_registers(
        redis: Redis, keys: Keys) -> None:
    bus, liveness = _liveness(redis, keys, max_age_s=60)
    assert await liveness.alive(["late"]) == {}
    await bus.register_worker("late", "client", ttl_s=30, info={})
    assert set(await liveness.alive(["late"])) == {"late"}
