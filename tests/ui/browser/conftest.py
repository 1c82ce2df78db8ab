"""A real browser for the dashboard's tests: Debian's Chromium driven by Playwright.

Playwright's own browser download does not work on these machines (and nothing may be
downloaded at test time), so it is pointed at ``/usr/bin/chromium`` (``executable_path``) with
a fresh user-data directory. Without Chromium or the ``playwright`` package (the ``browser``
extra) the tests are skipped, saying which is missing, unless ``ORCHESTRATOR_REQUIRE_BROWSER=1``
(as ``.ci/run`` sets): then they fail.

Fixtures:
- ``browser_context`` (module): a persistent Chromium context in the ``Asia/Kolkata`` time zone
  (UTC+05:30, so a time left in UTC is visible), logged in to the module's ``ui_server`` (the
  token's cookie, when the dashboard has a token).
- ``page`` (per test): a new tab; after the test, pass or fail, a full-page screenshot is
  saved as ``artifacts/ui/{test name}.png`` and the tab is closed.
- ``client``: an ``orchestrator.client.Client`` on the ``ui_server``'s system.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio

from orchestrator.client import Client
from orchestrator.settings import load_settings

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext, Page

    from tests.ui.support import UiServer

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIME_ZONE = "Asia/Kolkata"
ARTIFACTS = Path(__file__).resolve().parents[3] / "artifacts" / "ui"
REQUIRE_ENV = "ORCHESTRATOR_REQUIRE_BROWSER"


def missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not os.access(CHROMIUM, os.X_OK):
        return (f"{CHROMIUM} is missing (apt-get install --no-install-recommends chromium "
                "chromium-driver)")
    try:
        import playwright.async_api  # noqa: F401, PLC0415
    except ImportError:
        return "the playwright package is missing (pip install -e '.[browser]')"
    return None


def require_browser() -> None:
    """Skip (or fail, when the browser is required) without Chromium or Playwright."""
    reason = missing()
    if reason is None:
        return
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but {reason}", pytrace=False)
    pytest.skip(f"browser tests skipped: {reason}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip before any fixture starts a system when the browser is missing (unless it is
    required: then ``browser_context`` fails the tests)."""
    reason = missing()
    if reason is None or os.environ.get(REQUIRE_ENV) == "1":
        return
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.skip(reason=f"browser tests skipped: {reason}"))


@pytest.fixture(scope="module", autouse=True)
def browser_required() -> None:
    """Fails (when required) before any system is started for nothing."""
    require_browser()


def base_url(ui_server: UiServer) -> str:
    return str(ui_server.url).rstrip("/")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def browser_context(ui_server: UiServer, tmp_path_factory: pytest.TempPathFactory
                          ) -> AsyncIterator[BrowserContext]:
    from playwright.async_api import async_playwright  # noqa: PLC0415

    async with async_playwright() as pw:
        context = await pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM), args=FLAGS, headless=True,
            timezone_id=TIME_ZONE, locale="en-US", viewport={"width": 1280, "height": 900},
            accept_downloads=True)
        context.set_default_timeout(15_000)
        try:
            if ui_server.token:  # the login sets the HttpOnly cookie the pages and /events use
                tab = await context.new_page()
                answer = await tab.goto(f"{base_url(ui_server)}/login?token={ui_server.token}")
                assert answer is not None and answer.ok, "the dashboard refused its token"
                await tab.close()
            yield context
        finally:
            await context.close()


def artifact_name(node_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", node_name).strip("_") + ".png"


@pytest_asyncio.fixture(loop_scope="session")
async def page(browser_context: BrowserContext, request: pytest.FixtureRequest
               ) -> AsyncIterator[Page]:
    tab = await browser_context.new_page()
    problems: list[str] = []
    tab.on("pageerror", lambda error: problems.append(str(error)))
    try:
        yield tab
        assert not problems, f"the page's script failed: {problems}"
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        try:  # (from the top: a full-page shot of a scrolled page repeats the sticky header)
            with contextlib.suppress(Exception):  # (a page that broke is shot as it is)
                await tab.evaluate("window.scrollTo(0, 0)")
            await tab.screenshot(path=str(ARTIFACTS / artifact_name(request.node.name)),
                                 full_page=True)
        finally:
            await tab.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(ui_server: UiServer) -> AsyncIterator[Client]:
    """A client with the settings the system's processes have (read from ``ui_server.env``
    as the CLI reads its environment)."""
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith(("ORCHESTRATOR_", "AWS_"))]:
            patch.delenv(name)
        for name, value in ui_server.env.items():
            if name.startswith(("ORCHESTRATOR_", "AWS_")):
                patch.setenv(name, value)
        settings = load_settings()
    async with Client(settings) as c:
        yield c
