"""One process's endpoint: ``/metrics`` from a registry, ``/healthz``, ``/readyz``.

Each endpoint has a registry of its own (not prometheus-client's global one), holding the
process's collectors plus the standard process, platform and garbage-collector ones, so two
endpoints in one Python process (tests) never mix their series.
"""

from __future__ import annotations

import anyio
from anyio.abc import TaskStatus
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from orchestrator.health.address import parse_address
from orchestrator.health.counters import Buckets
from orchestrator.health.http import Response, Route, serve_http
from orchestrator.health.readiness import Readiness
from orchestrator.logs import get_logger

log = get_logger("orchestrator.health")


def new_registry(*collectors: Collector) -> CollectorRegistry:
    """A registry with ``collectors`` and the process, platform and GC collectors."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    for collector in collectors:
        registry.register(collector)
    return registry


def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    """A counter family of one value (``name`` without ``_total``: the family adds it)."""
    return CounterMetricFamily(name, doc, value=value)


def histogram(name: str, doc: str, buckets: Buckets) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, doc, buckets=buckets.cumulative(),
                                 sum_value=buckets.total)


def routes(registry: CollectorRegistry, readiness: Readiness) -> dict[str, Route]:
    def metrics() -> Response:
        return Response(200, generate_latest(registry), CONTENT_TYPE_LATEST)

    def healthz() -> Response:
        return Response(200, b"ok\n")

    def readyz() -> Response:
        problems = readiness.problems()
        if problems:
            return Response(503, ("not ready\n" + "".join(f"- {p}\n" for p in problems))
                            .encode())
        return Response(200, b"ready\n")

    return {"/metrics": metrics, "/healthz": healthz, "/readyz": readyz}


async def serve_endpoint(address: str, registry: CollectorRegistry, readiness: Readiness, *,
                         what: str, task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED
                         ) -> None:
    """Serve the three paths on ``address`` until cancelled; reports the bound port."""
    host, port = parse_address(address)

    async def serve(*, task_status: TaskStatus[int]) -> None:
        await serve_http(host, port, routes(registry, readiness), task_status=task_status)

    async with anyio.create_task_group() as tg:
        bound: int = await tg.start(serve)
        log.info("metrics and health listening", process=what, host=host, port=bound,
                 paths=["/metrics", "/healthz", "/readyz"])
        task_status.started(bound)
