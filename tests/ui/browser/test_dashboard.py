"""The dashboard in a real browser (Chromium through Playwright) against a live system: a real
daemon and workers, Valkey, rclone's S3 and the Mongo stand-in, served by ``orchestrator ui``
(the ``ui_server`` fixture of tests/ui/conftest.py).

What a user would see, checked with Playwright's auto-waiting ``expect``: a job submitted after
the jobs page loaded appears on it without a reload; a running fedavg job's chart gains a point
per round; the checkpoint download link gives the bytes whose sha256 the manifest holds; the
job page rides out a daemon restart and still reaches FINISHED_SUCCESSFULLY without a reload;
the workers page lists the live workers. Each test leaves a screenshot in ``artifacts/ui/``.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from orchestrator.client import Client
from orchestrator.core import JobStatus
from orchestrator.errors import JobNotFoundError
from tests.helpers import unique
from tests.ui.browser.conftest import REQUIRE_ENV, TIME_ZONE, base_url
from tests.ui.support import UiServer

try:
    from playwright.async_api import BrowserContext, Page, expect
except ImportError:  # (conftest.py says why; with the browser required, this fails)
    if os.environ.get(REQUIRE_ENV) == "1":
        raise
    pytest.skip("browser tests skipped: the playwright package is missing",
                allow_module_level=True)

pytestmark = pytest.mark.slow

ROUNDS = 3
LIVE_S = 60_000  # ms: how long a live change may take to show (a job's whole run is ~10 s)

#: Records, in the page, every value a chart's data-points took and every time the connection
#: banner showed, so that a test can read what happened between its checks.
RECORDER = """() => {
  window.__pageToken = Math.random();
  window.__points = [];
  window.__banners = [];
  window.__seen = [];
  const record = () => {
    for (const row of document.querySelectorAll("#jobs tbody tr")) {
      if (!window.__seen.includes(row.dataset.jobId)) window.__seen.push(row.dataset.jobId);
    }
    const chart = document.querySelector('.chart[data-metric="accuracy"][data-side="server"]');
    const value = chart ? Number(chart.dataset.points) : null;
    if (value !== null && window.__points[window.__points.length - 1] !== value) {
      window.__points.push(value);
    }
    const banner = document.getElementById("connection");
    if (banner && !banner.hidden) {
      window.__banners.push(`${banner.className} ${banner.textContent}`);
    }
  };
  record();
  new MutationObserver(record).observe(document.body,
    {subtree: true, childList: true, attributes: true, attributeFilter: ["data-points", "hidden"]});
}"""


@pytest.fixture(scope="module")
def finished() -> dict[str, str]:
    """The id of the job the chart test ran to its end (the download test reuses it)."""
    return {}


async def workers_of(client: Client) -> tuple[str, list[str]]:
    """The live system's server worker and up to two of its client workers."""
    workers = await client.workers()
    servers = sorted(w.name for w in workers if w.role == "server")
    clients = sorted(w.name for w in workers if w.role == "client")
    assert servers and clients, f"the system has no server or client worker: {workers}"
    return servers[0], clients[:2]


async def submit_fedavg(client: Client, prefix: str, rounds: int = ROUNDS,
                        job_id: str | None = None) -> str:
    """A small fedavg job (a few hundred samples), its rounds paced to a second each
    (unpaced they take milliseconds: a page could open on a job already done, or a daemon
    restart come after its end)."""
    server, clients = await workers_of(client)
    job_id = job_id or unique(prefix)
    shared = {"seed": 5, "features": 8, "classes": 3}
    handle = await client.submit({
        "job_id": job_id, "workload": "fedavg", "rounds": rounds,
        "server": {"worker": server,
                   "config": {**shared, "test_samples": 200, "min_round_s": 1.0}},
        "clients": [{"worker": name, "config": {**shared, "samples": 150, "epochs": 1}}
                    for name in clients],
        "timeouts": {"start_s": 60, "heartbeat_s": 15, "round_s": 90, "job_s": 300},
        "labels": {"suite": "browser"},
    })
    assert handle.warnings == []
    return job_id


async def until_stored(client: Client, job_id: str) -> None:
    """Until the daemon has taken the submission in (its page exists)."""
    async with asyncio.timeout(30):
        while True:
            try:
                await client.get(job_id)
                return
            except JobNotFoundError:
                await asyncio.sleep(0.1)


async def open_page(page: Page, ui_server: UiServer, path: str) -> None:
    answer = await page.goto(base_url(ui_server) + path)
    assert answer is not None and answer.status == 200, f"{path}: {answer and answer.status}"
    await page.evaluate(RECORDER)


async def not_reloaded(page: Page) -> None:
    assert await page.evaluate("typeof window.__pageToken") == "number", "the page reloaded"


async def test_jobs_page_shows_a_job_submitted_after_it_loaded(
        page: Page, ui_server: UiServer, client: Client, browser_context: BrowserContext
        ) -> None:
    await open_page(page, ui_server, "/jobs")
    await expect(page.locator("body")).to_have_attribute("data-page", "jobs")
    running = await browser_context.new_page()  # a second tab, filtered to running jobs
    await open_page(running, ui_server, "/jobs?status=IN_PROGRESS")
    job_id = await submit_fedavg(client, "br-list")

    row = page.locator(f'tr[data-job-id="{job_id}"]')
    await expect(row).to_be_visible(timeout=LIVE_S)
    await expect(row.locator("td.c-id a")).to_have_attribute("href", f"/jobs/{job_id}")
    assert await page.locator("#jobs tbody tr").first.get_attribute("data-job-id") == job_id
    # The same row follows the job to its end, still without a reload.
    await expect(row).to_have_attribute("data-status", "FINISHED_SUCCESSFULLY", timeout=LIVE_S)
    await expect(row.locator("td.c-status .status")).to_have_text("FINISHED_SUCCESSFULLY")
    await expect(row.locator("td.c-progress span")).to_have_text(f"{ROUNDS}/{ROUNDS}")
    await expect(row.locator("td.c-age time.age")).to_have_text(re.compile(r"^\d+(s|m\d\ds)$"))
    await not_reloaded(page)
    await expect(page.locator("#connection")).to_be_hidden()
    # The filtered tab showed the job while it ran and dropped it when it no longer matched.
    assert job_id in await running.evaluate("window.__seen")
    await expect(running.locator(f'tr[data-job-id="{job_id}"]')).to_have_count(0)
    await not_reloaded(running)
    await running.close()


async def test_a_running_fedavg_jobs_chart_gains_a_point_per_round(
        page: Page, ui_server: UiServer, client: Client, finished: dict[str, str]) -> None:
    job_id = await submit_fedavg(client, "br-chart")
    await until_stored(client, job_id)
    await open_page(page, ui_server, f"/jobs/{job_id}")

    # The server evaluates once per round: its accuracy chart has a point per round done.
    chart = page.locator('.chart[data-metric="accuracy"][data-side="server"]')
    await expect(chart).to_have_attribute("data-points", str(ROUNDS), timeout=LIVE_S)
    await expect(page.locator("#status")).to_have_text("FINISHED_SUCCESSFULLY", timeout=LIVE_S)
    await not_reloaded(page)
    # Every value the chart showed, in order: it grew while the page stayed open. (Rounds that
    # end within one daemon batch arrive as one update, so a step may add more than one.)
    seen = await page.evaluate("window.__points")
    assert len(seen) >= 2 and seen[-1] == ROUNDS, f"the chart did not grow live: {seen}"
    assert all(a < b for a, b in itertools.pairwise(seen)), seen
    # One line per client on the clients' charts, with a value per round for each.
    _server, clients = await workers_of(client)
    clients_loss = page.locator('.chart[data-metric="loss"][data-side="clients"]')
    await expect(clients_loss).to_have_attribute("data-points", str(len(clients) * ROUNDS))
    await expect(clients_loss.locator("h3")).to_have_text("loss — clients")
    await expect(clients_loss.locator(".u-legend .u-series")).to_have_count(1 + len(clients))
    await expect(chart.locator("canvas")).to_have_count(1)
    # Hovering the plot shows that round's values in the legend.
    await chart.locator(".u-over").hover()
    await expect(chart.locator(".u-legend .u-series").nth(1).locator(".u-value")).to_have_text(
        re.compile(r"^0\.\d+$"))
    # Times are shown in the browser's time zone (UTC+05:30 here), not the server's UTC.
    created_at = (await client.get(job_id)).created_at
    local = created_at.astimezone(ZoneInfo(TIME_ZONE)).strftime("%Y-%m-%d %H:%M:%S GMT+5:30")
    await expect(page.locator("#created time")).to_have_text(local)
    rows = page.locator("#timeline li")
    await expect(rows.last.locator(".to")).to_have_text("FINISHED_SUCCESSFULLY")
    finished["job_id"] = job_id
    await chart.scroll_into_view_if_needed()


async def test_the_download_link_gives_the_checkpoint_of_the_manifest(
        page: Page, ui_server: UiServer, client: Client, finished: dict[str, str],
        tmp_path: Path) -> None:
    job_id = finished.get("job_id") or await run_to_end(client)
    rows = await client.checkpoints(job_id)
    assert rows, "the job has no checkpoints"
    await open_page(page, ui_server, f"/jobs/{job_id}")

    links = page.locator("#checkpoints a.download")
    await expect(links).to_have_count(len(rows))
    index = len(rows) - 1  # the last one: the final checkpoint
    link = links.nth(index)
    href = await link.get_attribute("href")
    assert href == f"/jobs/{job_id}/checkpoints/{index}", "pages never embed presigned URLs"
    cells = page.locator("#checkpoints tbody tr").nth(index)
    await expect(cells.locator("td.k-sha256 code")).to_have_text(rows[index]["sha256"])

    # A click: the browser follows the redirect to the presigned URL and saves the file.
    async with page.expect_download() as started:
        await link.click()
    download = await started.value
    saved = tmp_path / "checkpoint.npz"
    await download.save_as(saved)
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == rows[index]["sha256"]
    # The same link fetched with the page's cookies: redirected once, to the object store.
    answer = await page.request.get(base_url(ui_server) + href)
    assert answer.ok
    body = await answer.body()
    assert len(body) == rows[index]["size"]
    assert hashlib.sha256(body).hexdigest() == rows[index]["sha256"]
    assert answer.url != base_url(ui_server) + href, "the link did not redirect"


async def run_to_end(client: Client) -> str:
    job_id = await submit_fedavg(client, "br-done")
    job = await client.wait(job_id, timeout_s=120)
    assert job.status is JobStatus.FINISHED_SUCCESSFULLY
    return job_id


async def test_the_job_page_survives_a_daemon_restart(
        page: Page, ui_server: UiServer, client: Client) -> None:
    # Opened before the job exists (as `demo --ui` prints its URL): "No such job", until the
    # job has news; then the page loads itself.
    job_id = unique("br-restart")
    answer = await page.goto(f"{base_url(ui_server)}/jobs/{job_id}")
    assert answer is not None and answer.status == 404
    await submit_fedavg(client, "br-restart", rounds=4, job_id=job_id)
    await expect(page.locator("#status")).to_have_text("IN_PROGRESS", timeout=LIVE_S)
    await page.evaluate(RECORDER)

    restarted_at = datetime.now(UTC)
    await asyncio.to_thread(ui_server.restart_daemon)

    await expect(page.locator("#status")).to_have_text("FINISHED_SUCCESSFULLY", timeout=LIVE_S)
    job = await client.get(job_id)
    assert job.finished_at is not None and job.finished_at > restarted_at, \
        "the job ended before the daemon was restarted: nothing was shown after the restart"
    chart = page.locator('.chart[data-metric="accuracy"][data-side="server"]')
    await expect(chart).to_have_attribute("data-points", "4")
    await expect(page.locator("#connection")).to_be_hidden()
    await not_reloaded(page)
    banners = await page.evaluate("window.__banners")
    assert all("trouble" not in b for b in banners), banners


async def test_the_workers_page_lists_the_live_workers(
        page: Page, ui_server: UiServer, client: Client) -> None:
    names = sorted(w.name for w in await client.workers())
    await open_page(page, ui_server, "/workers")
    rows = page.locator("#workers tbody tr")
    await expect(rows).to_have_count(len(names))
    assert sorted([str(await r.get_attribute("data-worker")) for r in await rows.all()]) == names
    server, _clients = await workers_of(client)
    row = page.locator(f'#workers tr[data-worker="{server}"]')
    await expect(row.locator("td.w-role")).to_have_text("server")
    await expect(row.locator("td.w-workloads")).to_contain_text("fedavg")
    age = row.locator("td.w-heartbeat time.age")
    await expect(age).to_have_text(re.compile(r"^\d+s$"))
    # The server sends the workers every few seconds: the script re-renders the table from it
    # (the marked rows are replaced by new ones with the same content).
    await page.evaluate("document.querySelectorAll('#workers tbody tr')"
                        ".forEach((row) => { row.dataset.mark = 'old'; })")
    await expect(page.locator("#workers tr[data-mark]")).to_have_count(0, timeout=LIVE_S)
    await expect(rows).to_have_count(len(names))
    await expect(row.locator("td.w-role")).to_have_text("server")
    await expect(age).to_have_text(re.compile(r"^\d+s$"))
    await expect(page.locator("#connection")).to_be_hidden()
    await not_reloaded(page)


async def test_text_from_jobs_is_shown_as_text_never_as_markup(
        page: Page, ui_server: UiServer, client: Client) -> None:
    """A workload's error message with HTML in it, inserted by the script (the jobs row,
    live) and rendered by the server (the job page): shown literally, never run."""
    server, clients = await workers_of(client)
    job_id = unique("br-markup")
    message = '<img id="injected" src="x" onerror="window.__ran = 1"><b>bold</b>'
    await open_page(page, ui_server, "/jobs")
    only_the_server = {"message": message, "participant": "server"}
    handle = await client.submit({
        "job_id": job_id, "workload": "fail", "rounds": 1,
        "server": {"worker": server, "config": only_the_server},
        "clients": [{"worker": name, "config": only_the_server} for name in clients],
        "timeouts": {"start_s": 60, "heartbeat_s": 15, "round_s": 60, "job_s": 120}})
    assert handle.warnings == []

    row = page.locator(f'tr[data-job-id="{job_id}"]')
    await expect(row).to_have_attribute("data-status", "FINISHED_WITH_ERROR", timeout=LIVE_S)
    await expect(row.locator("td.c-error")).to_contain_text(message)
    await not_reloaded(page)
    await no_markup_ran(page)

    await open_page(page, ui_server, f"/jobs/{job_id}")
    await expect(page.locator("#error")).to_contain_text(message)
    await expect(page.locator('#participants tr[data-participant="server"] td.p-state')
                 ).to_contain_text(message)
    await no_markup_ran(page)


async def no_markup_ran(page: Page) -> None:
    await expect(page.locator("#injected")).to_have_count(0)
    await expect(page.locator("b", has_text="bold")).to_have_count(0)
    assert await page.evaluate("window.__ran") is None
