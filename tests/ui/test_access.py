"""Access to the dashboard: with a token, every request but ``/healthz`` and ``/static/*``
needs it (bearer header, or the cookie ``?token=`` sets); a wrong or missing one is 401; the
token is never printed (unless made for this run), logged or served. Cancel works only with
``--allow-cancel`` and a same-origin form. Starting off loopback without a token, or with
``--allow-cancel`` without one, is refused with exit 2."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from helpers import run_cli, subprocess_env, unique

from orchestrator.client import SyncClient
from orchestrator.ui.auth import COOKIE
from tests.ui.conftest import CLIENTS, SERVER
from tests.ui.support import (
    LiveSystem,
    UiProcess,
    UiServer,
    dashboard_on,
    job_spec,
    settings_of,
    start_ui,
)

TOKEN = "t-" + secrets.token_urlsafe(24)


@pytest.fixture(scope="module")
def guarded(ui_system: LiveSystem, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[UiServer]:
    """A dashboard with a token and ``--allow-cancel`` on the live system."""
    with dashboard_on(ui_system, tmp_path_factory.mktemp("acc"), "--allow-cancel",
                      token=TOKEN) as dashboard:
        yield dashboard


@pytest.fixture(scope="module")
def read_only(guarded: UiServer, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[UiProcess]:
    """A second dashboard on the same system: no token, no cancel."""
    process = start_ui(guarded.env, tmp_path_factory.mktemp("ro"))
    yield process
    process.stop()


@pytest.fixture(scope="module")
def client(guarded: UiServer) -> Iterator[SyncClient]:
    with SyncClient(settings_of(guarded.env)) as sync:
        yield sync


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("path", ["/jobs", "/api/jobs", "/workers", "/events?view=jobs",
                                  "/jobs/x/checkpoints/0", "/login", "/"])
def test_no_or_a_wrong_token_is_401(guarded: UiServer, path: str) -> None:
    url = guarded.url.rstrip("/") + path
    assert httpx.get(url, timeout=10).status_code == 401
    assert httpx.get(url, headers=bearer("wrong-" + TOKEN), timeout=10).status_code == 401
    assert httpx.get(url, cookies={COOKIE: TOKEN}, timeout=10).status_code == 401  # not a digest
    joined = "&" if "?" in path else "?"
    assert httpx.get(url + f"{joined}token=nope", timeout=10).status_code == 401
    refusal = httpx.get(url, timeout=10)
    assert TOKEN not in refusal.text and "token" in refusal.text.lower()


def test_health_and_static_need_no_token(guarded: UiServer) -> None:
    assert httpx.get(guarded.url + "healthz", timeout=10).text == "ok"
    assert httpx.get(guarded.url + "static/app.js", timeout=10).status_code in (200, 404)


def test_the_token_opens_every_page(guarded: UiServer) -> None:
    for path in ("jobs", "api/jobs", "workers", "rejections", "api/workers"):
        answer = httpx.get(guarded.url + path, headers=bearer(), timeout=10)
        assert answer.status_code == 200, path
        assert TOKEN not in answer.text


def test_token_in_the_url_sets_the_cookie_and_leaves_the_url(guarded: UiServer) -> None:
    with httpx.Client(timeout=10) as http:
        answer = http.get(guarded.url + "workers", params={"token": TOKEN, "x": "1"},
                          follow_redirects=False)
        assert answer.status_code == 303
        assert answer.headers["location"] == "/workers?x=1"
        cookie = answer.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE}=") and TOKEN not in cookie
        for flag in ("HttpOnly", "SameSite=strict", "Path=/"):
            assert flag.lower() in cookie.lower()
        assert http.get(guarded.url + "jobs").status_code == 200  # the cookie now
        login = http.get(guarded.url + "login", params={"token": TOKEN},
                         follow_redirects=False)
        assert login.status_code == 303 and login.headers["location"] == "/jobs"
        behind_tls = http.get(guarded.url + "jobs", params={"token": TOKEN},
                              headers={"X-Forwarded-Proto": "https"}, follow_redirects=False)
        assert "secure" in behind_tls.headers["set-cookie"].lower()  # (a proxy on loopback)
        assert "secure" not in cookie.lower()
        evil = http.get(guarded.url.rstrip("/") + "//evil.example/x",
                        params={"token": TOKEN}, follow_redirects=False)
        assert evil.headers["location"].startswith("/evil.example")
    assert TOKEN not in guarded.process.output()  # never logged


def test_cancel_needs_the_same_origin(guarded: UiServer, client: SyncClient) -> None:
    job_id = unique("cancel")
    client.submit(job_spec(job_id, "sleep", server=SERVER, clients=CLIENTS, rounds=20,
                           config={"seconds": 2}))
    page = httpx.get(guarded.url + f"jobs/{job_id}", headers=bearer(), timeout=10).text
    assert f'<form id="cancel" method="post" action="/jobs/{job_id}/cancel">' in page
    host = guarded.url.removeprefix("http://").rstrip("/")
    url = guarded.url + f"jobs/{job_id}/cancel"
    assert httpx.post(url, timeout=10).status_code == 401  # no token
    assert httpx.post(url, headers=bearer(), timeout=10).status_code == 403  # no origin
    assert httpx.post(url, headers={**bearer(), "Origin": "http://evil.example"},
                      timeout=10).status_code == 403
    assert httpx.post(url, headers={**bearer(), "Referer": f"http://evil.example/{host}"},
                      timeout=10).status_code == 403
    assert client.get(job_id).status.value != "FINISHED_CANCELLED"
    done = httpx.post(url, headers={**bearer(), "Origin": f"http://{host}"}, timeout=10,
                      follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == f"/jobs/{job_id}"
    job = client.wait(job_id, timeout_s=60)
    assert job.status.value == "FINISHED_CANCELLED"
    assert job.cancel_requested_at is not None
    page = httpx.get(guarded.url + f"jobs/{job_id}", headers=bearer(), timeout=10).text
    assert 'id="cancel"' not in page  # finished: no button


def test_without_allow_cancel_there_is_no_cancel(read_only: UiProcess, guarded: UiServer,
                                                 client: SyncClient) -> None:
    job_id = unique("keep")
    client.submit(job_spec(job_id, "noop", server=SERVER, clients=CLIENTS))
    client.wait(job_id, timeout_s=60)
    host = read_only.url.removeprefix("http://").rstrip("/")
    answer = httpx.post(read_only.url + f"jobs/{job_id}/cancel",
                        headers={"Origin": f"http://{host}"}, timeout=10)
    assert answer.status_code == 403
    page = httpx.get(read_only.url + f"jobs/{job_id}", timeout=10)
    assert page.status_code == 200 and 'id="cancel"' not in page.text
    assert httpx.get(read_only.url + f"api/jobs/{job_id}", timeout=10).json()[
        "can_cancel"] is False


def test_startup_line_never_shows_a_configured_token(guarded: UiServer) -> None:
    assert guarded.process.startup_line == f"dashboard: {guarded.url}"
    assert "ORCHESTRATOR_UI_TOKEN" not in guarded.process.output()  # a known variable


def test_a_token_made_for_the_run_is_in_the_startup_url(guarded: UiServer,
                                                        tmp_path: Path) -> None:
    process = start_ui(guarded.env, tmp_path, "--new-token")
    try:
        line = process.startup_line
        assert "login?token=" in line
        token = line.split("login?token=", 1)[1]
        assert httpx.get(process.url + "jobs", headers=bearer(token), timeout=10
                         ).status_code == 200
        assert httpx.get(process.url + "jobs", timeout=10).status_code == 401
    finally:
        process.stop()


def test_off_loopback_without_a_token_is_refused(stack_env: dict[str, str]) -> None:
    result = run_cli("ui", "--host", "0.0.0.0", "--port", "0", env=subprocess_env(stack_env),
                     timeout_s=30)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "not loopback" in result.stderr and "--token-file" in result.stderr
    assert "dashboard:" not in result.stdout


@pytest.mark.parametrize(("args", "needle"), [
    (["--host", "192.0.2.1"], "not loopback"),
    (["--host", "::"], "not loopback"),
    (["--allow-cancel"], "--allow-cancel needs an access token"),
    (["--token-file", "{short}"], "16-512 characters"),
    (["--token-file", "{missing}"], "cannot read the dashboard token file"),
    (["--new-token", "--token-file", "{short}"], "exclude each other"),
])
def test_unsafe_or_bad_starts_are_refused(args: list[str], needle: str, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner  # noqa: PLC0415

    from orchestrator.cli.ui import ui  # noqa: PLC0415

    for name in ("ORCHESTRATOR_UI_TOKEN", "ORCHESTRATOR_UI_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "short").write_text("abc\n")
    paths = {"short": tmp_path / "short", "missing": tmp_path / "missing"}
    result = CliRunner().invoke(ui, ["--port", "0", *(a.format(**paths) for a in args)])
    assert result.exit_code == 2, result.output
    assert needle in result.output and "dashboard:" not in result.output
