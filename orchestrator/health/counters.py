"""Plain-int counters that hot paths keep and the metrics endpoint reads at scrape time.

The daemon counts in its ``Stats`` and the worker in :class:`UploadCounters`; neither imports
``prometheus_client`` nor takes a lock, so a batch costs a few integer additions. The
endpoint's collectors (:mod:`orchestrator.health.daemon`, :mod:`orchestrator.health.worker`)
turn them into Prometheus families when scraped.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field

#: Upper bounds of the batch-size histogram (entries per commit).
BATCH_SIZES: tuple[float, ...] = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000)
#: Upper bounds of latency histograms, in seconds (commits, uploads).
LATENCY_S: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                                2.5, 5.0, 10.0, 30.0, 60.0)


class Buckets:
    """A histogram in plain ints: ``observe`` is one bisect and three additions."""

    __slots__ = ("bounds", "count", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(sorted(bounds))
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.count = 0
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, float]]:
        """``(le, observations <= le)`` for every bound and ``+Inf``, as Prometheus wants."""
        out: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip((*map(repr, map(float, self.bounds)), "+Inf"), self.counts,
                            strict=True):
            running += n
            out.append((bound, float(running)))
        return out


@dataclass(slots=True)
class UploadCounters:
    """Checkpoint uploads of one worker process: how many succeeded or finally failed, the
    bytes stored and how long each took from submit to its outcome (queueing and retries
    included)."""

    succeeded: int = 0
    failed: int = 0
    bytes: int = 0
    seconds: Buckets = field(default_factory=lambda: Buckets(LATENCY_S))

    def note(self, *, ok: bool, size: int, seconds: float) -> None:
        if ok:
            self.succeeded += 1
            self.bytes += size
        else:
            self.failed += 1
        self.seconds.observe(seconds)
