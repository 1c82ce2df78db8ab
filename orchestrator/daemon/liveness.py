"""Which workers are alive, for intake's dispatch pass, without a Redis read per batch.

A worker seen alive is trusted for ``max_age_s`` (default 1 s) before it is read again. Its
registration outlives that by far (a TTL of ``ttl_s``, refreshed every third of it), so a
worker that died is dispatched to about as late as without the cache: the heartbeat deadline
then fails its participant, as it would for a worker dying a moment after the dispatch. A
worker seen absent is not remembered: one that registers is found by the next batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio

from orchestrator.bus import Bus
from orchestrator.daemon.retry import Retrier


class Liveness:
    def __init__(self, bus: Bus, retry: Retrier, *, max_age_s: float = 1.0) -> None:
        self.bus = bus
        self.retry = retry
        self.max_age_s = max_age_s
        self._seen: dict[str, tuple[float, dict[str, Any]]] = {}

    async def alive(self, names: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Registration info of those of ``names`` that are alive."""
        now = anyio.current_time()
        stale = [n for n in dict.fromkeys(names)
                 if n not in self._seen or now - self._seen[n][0] > self.max_age_s]
        if stale:
            fresh = await self.retry(lambda: self.bus.alive_workers(stale), "worker liveness",
                                     shield=False)
            for name in stale:
                if name in fresh:
                    self._seen[name] = (now, fresh[name])
                else:
                    self._seen.pop(name, None)
        return {n: self._seen[n][1] for n in names if n in self._seen}
