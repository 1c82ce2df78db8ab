"""The dashboard when its servers are away: pages are 503 saying which server (never a
traceback, never a URL with its password), ``/healthz`` still answers, and the event stream
says ``trouble`` and keeps trying."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from helpers import subprocess_env

from orchestrator.devstack.servers import free_port, start_redis
from tests.ui.support import UiProcess, start_ui

PASSWORD = "pw-" + "s3cr3t-value-1234"


@pytest.fixture(scope="module")
def stranded(stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[UiProcess]:
    """A dashboard whose Redis and MongoDB ports have nobody listening."""
    env = subprocess_env(stack_env,
                         ORCHESTRATOR_REDIS_URL=f"redis://watcher:{PASSWORD}@127.0.0.1:"
                                                f"{free_port()}/0",
                         ORCHESTRATOR_MONGO_URL=f"mongodb://u:{PASSWORD}@127.0.0.1:"
                                                f"{free_port()}/")
    process = start_ui(env, tmp_path_factory.mktemp("stranded"))
    yield process
    process.stop()


@pytest.mark.parametrize("path", ["jobs", "jobs/x", "workers", "rejections"])
def test_pages_are_503_naming_the_server(stranded: UiProcess, path: str) -> None:
    answer = httpx.get(stranded.url + path, timeout=30)
    assert answer.status_code == 503
    assert "unreachable" in answer.text and "Traceback" not in answer.text
    assert PASSWORD not in answer.text and "127.0.0.1" not in answer.text.split("<main>")[0]


def test_json_is_503_too(stranded: UiProcess) -> None:
    answer = httpx.get(stranded.url + "api/jobs", timeout=30)
    assert answer.status_code == 503
    assert "unreachable" in answer.json()["error"] and PASSWORD not in answer.text


def test_health_still_answers(stranded: UiProcess) -> None:
    assert httpx.get(stranded.url + "healthz", timeout=10).text == "ok"


def test_the_event_stream_reports_trouble(stranded: UiProcess) -> None:
    with httpx.stream("GET", stranded.url + "events", params={"view": "jobs"},
                      timeout=30) as stream:
        text = ""
        for chunk in stream.iter_text():
            text += chunk
            if text.count("event: trouble") >= 2:  # reported, retried, reported again
                break
    data = [line.removeprefix("data: ") for line in text.splitlines()
            if line.startswith("data: ")]
    message = json.loads(data[0])["message"]
    assert message.startswith("Redis unreachable") and PASSWORD not in text
    assert "redis://" not in text


def test_trouble_then_ok_when_redis_comes_back(stack_env: dict[str, str],
                                               tmp_path: Path) -> None:
    """Redis stops under an open stream (``trouble``, retried) and comes back on its port:
    ``ok`` clears it and notes flow again, from where the stream was."""
    import redis as redis_py  # noqa: PLC0415

    own = start_redis(tmp_path / "redis")
    env = subprocess_env(stack_env, ORCHESTRATOR_REDIS_URL=own.url,
                         ORCHESTRATOR_NAMESPACE="back")
    process = start_ui(env, tmp_path)
    try:
        with httpx.stream("GET", process.url + "events", params={"view": "workers"},
                          timeout=30) as stream:
            lines = stream.iter_lines()
            assert next(lines) == "retry: 2000"
            own.stop()
            seen = []
            for line in lines:
                seen.append(line)
                if line == "event: trouble":
                    break
            own = start_redis(tmp_path / "redis", own.port)
            for line in lines:
                seen.append(line)
                if line == "event: ok":
                    break
            assert "event: trouble" in seen and seen[-1] == "event: ok"
            with redis_py.Redis.from_url(own.url) as connection:
                connection.xadd("back:updates", {"update": '{"job_id": "j"}'})
            for line in lines:  # the workers view answers a note with the table
                if line == "event: workers":
                    break
    finally:
        process.stop()
        own.stop()
