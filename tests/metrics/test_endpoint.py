"""The endpoint in-process: addresses, histograms in plain ints, the HTTP server, readiness."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.health import Buckets, parse_address
from orchestrator.health.endpoint import histogram, new_registry, serve_endpoint
from orchestrator.health.readiness import Readiness, probe


@pytest.mark.parametrize(("text", "expected"), [
    ("9464", ("127.0.0.1", 9464)),
    (":9464", ("127.0.0.1", 9464)),
    ("0.0.0.0:9100", ("0.0.0.0", 9100)),
    ("[::1]:0", ("::1", 0)),
    ("metrics.local:80", ("metrics.local", 80)),
])
def test_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["", "host:", "host:port", "::1:9464", "70000", "-1"])
def test_bad_addresses_say_what_is_expected(text: str) -> None:
    with pytest.raises(ValueError, match="metrics address"):
        parse_address(text)


def test_buckets_are_cumulative_with_le_semantics() -> None:
    b = Buckets([1, 5, 10])
    for value in (0.5, 1, 3, 10, 11):
        b.observe(value)
    assert b.cumulative() == [("1.0", 2.0), ("5.0", 3.0), ("10.0", 4.0), ("+Inf", 5.0)]
    assert b.count == 5 and b.total == 25.5
    family = histogram("x_seconds", "doc", b)
    counts = {s.name: s.value for s in family.samples if s.name != "x_seconds_bucket"}
    assert counts == {"x_seconds_count": 5.0, "x_seconds_sum": 25.5}


class _Collector:
    def __init__(self) -> None:
        self.value = 0

    def collect(self):  # type: ignore[no-untyped-def]
        from prometheus_client.core import CounterMetricFamily  # noqa: PLC0415

        yield CounterMetricFamily("orchestrator_test_things", "things", value=self.value)


@asynccontextmanager
async def endpoint() -> AsyncIterator[tuple[str, Readiness, _Collector]]:
    """An endpoint on a free port (a context manager, not a fixture: its task group must be
    entered and left by the test's own task)."""
    readiness = Readiness(stale_s=60)
    collector = _Collector()
    registry = new_registry(collector)
    async with anyio.create_task_group() as tg:
        port = await tg.start(lambda *, task_status: serve_endpoint(
            "127.0.0.1:0", registry, readiness, what="test", task_status=task_status))
        yield f"http://127.0.0.1:{port}", readiness, collector
        tg.cancel_scope.cancel()


async def test_paths_answer() -> None:
    async with endpoint() as (base, readiness, collector), \
            httpx.AsyncClient(base_url=base) as http:
        collector.value = 7
        health = await http.get("/healthz")
        assert (health.status_code, health.text) == (200, "ok\n")
        metrics = await http.get("/metrics")
        assert metrics.status_code == 200
        assert metrics.headers["content-type"].startswith("text/plain")
        families = {f.name: f for f in text_string_to_metric_families(metrics.text)}
        assert families["orchestrator_test_things"].samples[0].value == 7
        assert "process_cpu_seconds" in families  # the standard collectors come along
        assert (await http.get("/readyz")).status_code == 200
        readiness.failed("redis", "ConnectionError: refused")
        not_ready = await http.get("/readyz")
        assert not_ready.status_code == 503
        assert "redis: ConnectionError: refused" in not_ready.text
        readiness.succeeded("redis")
        assert (await http.get("/readyz?verbose=1")).status_code == 200
        assert (await http.get("/nope")).status_code == 404
        assert (await http.post("/metrics")).status_code == 405
        assert (await http.head("/healthz")).status_code == 200


async def test_garbage_and_silence_do_not_stop_the_server() -> None:
    async with endpoint() as (base, _, _):
        port = int(base.rsplit(":", 1)[1])
        async with await anyio.connect_tcp("127.0.0.1", port) as raw:
            await raw.send(b"\x00\xffnot http\r\n\r\n")
            reply = await raw.receive()
            assert reply.startswith(b"HTTP/1.1 400")
        silent = await anyio.connect_tcp("127.0.0.1", port)  # says nothing at all
        async with httpx.AsyncClient(base_url=base) as http:
            assert (await http.get("/healthz")).status_code == 200
        await silent.aclose()


async def test_a_probe_that_fails_or_hangs_makes_the_process_unready() -> None:
    readiness = Readiness(stale_s=60)
    state = {"mode": "ok"}

    async def check() -> None:
        if state["mode"] == "fail":
            raise ConnectionError("refused")
        if state["mode"] == "hang":
            await anyio.sleep_forever()

    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: probe(readiness, "redis", check, every_s=0.01, timeout_s=0.05))
        with anyio.fail_after(5):
            while readiness.problems():
                await anyio.sleep(0.01)
            state["mode"] = "fail"
            while not readiness.problems():
                await anyio.sleep(0.01)
            assert readiness.problems() == ["redis: ConnectionError: refused"]
            state["mode"] = "hang"
            while "no answer within" not in " ".join(readiness.problems()):
                await anyio.sleep(0.01)
            state["mode"] = "ok"
            while readiness.problems():
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()


def test_stale_checks_and_conditions_count() -> None:
    async def main() -> None:
        readiness = Readiness(stale_s=0.0)
        readiness.add_check("store")
        assert readiness.problems() == ["store: not checked yet"]
        readiness.succeeded("store")
        await anyio.sleep(0.01)
        assert readiness.problems() == ["store: no answer for more than 0s"]
        readiness = Readiness()
        readiness.require(lambda: "daemon: stopping")
        assert readiness.problems() == ["daemon: stopping"]

    anyio.run(main)
