"""The dashboard's pure parts: the charts object, JSON for a script tag, the options' rules,
the token's cookie and the same-origin check, the filters, the scrubbing of secrets."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from starlette.datastructures import Headers, QueryParams

from orchestrator.core import Job, JobSpec
from orchestrator.core.machine import new_job
from orchestrator.errors import ConfigError
from orchestrator.settings import Settings
from orchestrator.ui import views
from orchestrator.ui.auth import cookie_value, loopback_host, same_origin
from orchestrator.ui.filters import FilterError, parse_filters
from orchestrator.ui.options import UiOptions, check_options, is_loopback, resolve_token
from orchestrator.ui.state import known_secrets

NOW = datetime(2026, 12, 2, 1, 2, 3, tzinfo=UTC)


def a_job() -> Job:
    spec = JobSpec.model_validate({
        "job_id": "j1", "workload": "fedavg", "rounds": 3, "server": {"worker": "s"},
        "clients": [{"worker": "c"}, {"worker": "c"}, {"worker": "c"}]})
    return new_job("j1", spec, NOW)


def test_charts_one_entry_per_metric_and_side_with_nulls() -> None:
    rows = [
        {"participant": "client-10", "round": 1, "metrics": {"loss": 2.0}},
        {"participant": "server", "round": 2, "metrics": {"zeta": 1, "accuracy": 0.5}},
        {"participant": "client-2", "round": 1, "metrics": {"loss": 1.0, "flag": True}},
        {"participant": "client-2", "round": 3, "metrics": {"loss": 0.5}},
        {"participant": "server", "round": 1, "metrics": {"accuracy": 0.25}},
    ]
    charts = views.charts(a_job(), rows)
    assert charts["rounds"] == [1, 2, 3]
    assert [(m["name"], m["side"]) for m in charts["metrics"]] == [
        ("accuracy", "server"), ("zeta", "server"), ("loss", "clients")]
    assert charts["metrics"][0]["series"] == [
        {"participant": "server", "values": [0.25, 0.5, None]}]
    loss = charts["metrics"][2]["series"]
    assert [s["participant"] for s in loss] == ["client-2", "client-10"]
    assert loss[0]["values"] == [1.0, None, 0.5] and loss[1]["values"] == [2.0, None, None]


def test_script_json_cannot_close_its_tag() -> None:
    text = views.script_json({"a": "</script><!-- & \u2028"})
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == {"a": "</script><!-- & \u2028"}


def test_times_and_sizes() -> None:
    assert views.iso(NOW) == "2026-12-02T01:02:03+00:00"
    assert views.shown_time("2026-12-02T06:32:03+05:30") == "2026-12-02 01:02:03 UTC"
    assert views.shown_time(None) == "-"
    assert views.human_size(512) == "512 B" and views.human_size(3 * 1024 * 1024) == "3.0 MiB"
    assert views.error_text({"code": "worker_lost", "message": "gone"}) == "worker_lost: gone"


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.3.4.5", True), ("::1", True), ("localhost", True),
    ("0.0.0.0", False), ("10.0.0.1", False), ("example.com", False), ("::", False)])
def test_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_options_refuse_unsafe_combinations() -> None:
    check_options(UiOptions())
    check_options(UiOptions(host="0.0.0.0", token="x" * 20))
    check_options(UiOptions(allow_cancel=True, token="x" * 20))
    with pytest.raises(ConfigError, match="not loopback"):
        check_options(UiOptions(host="0.0.0.0"))
    with pytest.raises(ConfigError, match="--allow-cancel"):
        check_options(UiOptions(allow_cancel=True))
    assert "x" * 20 not in repr(UiOptions(token="x" * 20))


def test_token_sources(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("  file-token-0123456789  \n")
    assert resolve_token(path, {"ORCHESTRATOR_UI_TOKEN": "e" * 20}) == (
        "file-token-0123456789", False)
    assert resolve_token(None, {"ORCHESTRATOR_UI_TOKEN_FILE": str(path)})[0] == \
        "file-token-0123456789"
    assert resolve_token(None, {"ORCHESTRATOR_UI_TOKEN": "e" * 20}) == ("e" * 20, False)
    assert resolve_token(None, {}) == (None, False)
    made, generated = resolve_token(None, {}, new_token=True)
    assert generated and made is not None and len(made) >= 16
    with pytest.raises(ConfigError, match="16-512"):
        resolve_token(None, {"ORCHESTRATOR_UI_TOKEN": "short"})
    with pytest.raises(ConfigError, match="exclude"):
        resolve_token(path, {}, new_token=True)
    options = UiOptions(port=9, token="t" * 20, token_generated=True)
    assert options.startup_url() == f"http://127.0.0.1:9/login?token={'t' * 20}"
    assert UiOptions(port=9, token="t" * 20).startup_url() == "http://127.0.0.1:9/"


def test_cookie_is_a_digest_and_origin_must_match() -> None:
    assert "tok" not in cookie_value("tok" * 8) and len(cookie_value("a" * 20)) == 64
    host = {"host": "127.0.0.1:8710"}
    assert same_origin(Headers({**host, "origin": "http://127.0.0.1:8710"}))
    assert same_origin(Headers({**host, "referer": "http://127.0.0.1:8710/jobs/x"}))
    assert not same_origin(Headers({**host, "origin": "http://evil.example"}))
    assert not same_origin(Headers({**host, "origin": "null"}))
    assert not same_origin(Headers(host))


def test_filters() -> None:
    filters = parse_filters(QueryParams("status=in_progress&workload=fedavg&label=a%3D1&"
                                        "label=b%3D2&label=&limit=7"))
    assert filters.status is not None and filters.status.value == "IN_PROGRESS"
    assert filters.labels == {"a": "1", "b": "2"} and filters.limit == 7
    assert filters.matches({"status": "IN_PROGRESS", "workload": "fedavg",
                            "labels": {"a": "1", "b": "2", "c": "3"}})
    assert not filters.matches({"status": "IN_PROGRESS", "workload": "fedavg",
                                "labels": {"a": "1"}})
    assert filters.matches({"status": "NOT_STARTED", "workload": "fedavg",
                            "labels": {"a": "1", "b": "2"}}, with_status=False)
    for bad in ("status=nope", "label=x", "label=%3Dv", "limit=x", "cursor=zzz",
                "label=%24where%3D1"):
        with pytest.raises(FilterError):
            parse_filters(QueryParams(bad))


def test_known_secrets_cover_urls_and_environment() -> None:
    settings = Settings(redis_url="redis://watcher:p%40ss-word@h:1/0",
                        mongo_url="mongodb://u:mongo-pass@h:2/?tlsCertificateKeyFilePassword=kp12")
    found = known_secrets(settings, "the-ui-token-123456",
                          {"AWS_SECRET_ACCESS_KEY": "aws-secret-1", "HOME": "/root"})
    assert {"p%40ss-word", "p@ss-word", "mongo-pass", "kp12", "the-ui-token-123456",
            "aws-secret-1"} <= set(found)
    assert "/root" not in found


@pytest.mark.parametrize(("host", "ok"), [
    ("127.0.0.1:8710", True), ("localhost:8710", True), ("[::1]:8710", True),
    ("127.0.0.1", True), ("evil.example:8710", False), ("10.1.2.3:8710", False),
    ("", False), ("[::]:80", False)])
def test_loopback_host(host: str, ok: bool) -> None:
    assert loopback_host(Headers({"host": host} if host else {})) is ok
