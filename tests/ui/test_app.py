"""The dashboard's pages and JSON against a live system (a real daemon and workers, a real
uvicorn serving ``orchestrator ui``): jobs render with their filters and paging, a job's
detail with timeline, participants, charts data, checkpoints (whose download link returns the
manifest's bytes), events and logs; bad filters are 400, unknown ids 404; nothing served
carries a credential of the stack; everything user-written is escaped."""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from helpers import unique

from orchestrator.client import SyncClient
from tests.ui.conftest import CLIENTS, SERVER
from tests.ui.support import FEDAVG_CLIENT, FEDAVG_SERVER, UiServer, job_spec, settings_of

XSS = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def client(ui_server: UiServer) -> Iterator[SyncClient]:
    with SyncClient(settings_of(ui_server.env)) as sync:
        yield sync


@pytest.fixture(scope="module")
def jobs(ui_server: UiServer, client: SyncClient) -> dict[str, str]:
    """Finished jobs: three noop (two labelled team=a, one team=b) and a 2-round fedavg."""
    tag = unique("t")
    ids = {"a1": f"{tag}-a1", "a2": f"{tag}-a2", "b": f"{tag}-b", "fed": f"{tag}-fed"}
    handles = [
        client.submit(job_spec(ids["a1"], "noop", server=SERVER, clients=CLIENTS,
                               labels={"team": "a", "tag": tag})),
        client.submit(job_spec(ids["a2"], "noop", server=SERVER, clients=CLIENTS,
                               labels={"team": "a", "tag": tag, "note": XSS})),
        client.submit(job_spec(ids["b"], "noop", server=SERVER, clients=CLIENTS,
                               labels={"team": "b", "tag": tag})),
        client.submit(job_spec(ids["fed"], "fedavg", server=SERVER, clients=CLIENTS, rounds=2,
                               labels={"tag": tag}, config=FEDAVG_SERVER,
                               client_config=FEDAVG_CLIENT)),
    ]
    for handle in handles:
        assert handle.wait(timeout_s=60).status.value == "FINISHED_SUCCESSFULLY"
    ids["tag"] = tag
    return ids


def get(ui: UiServer, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.get(ui.url.rstrip("/") + path, timeout=20, **kwargs)


def row_ids(page: str) -> list[str]:
    return re.findall(r'<tr id="job-([^"]+)" data-job-id=', page)


def test_without_a_token_only_loopback_names_are_served(ui_server: UiServer) -> None:
    port = ui_server.url.rstrip("/").rsplit(":", 1)[1]
    refused = get(ui_server, "/jobs", headers={"Host": f"rebound.example:{port}"})
    assert refused.status_code == 403 and "loopback" in refused.text
    assert get(ui_server, "/jobs", headers={"Host": f"localhost:{port}"}).status_code == 200


def test_root_redirects_and_health(ui_server: UiServer) -> None:
    answer = get(ui_server, "/", follow_redirects=False)
    assert answer.status_code == 307 and answer.headers["location"] == "/jobs"
    health = get(ui_server, "/healthz")
    assert health.status_code == 200 and health.text == "ok"


def test_jobs_page_renders_the_jobs_with_the_layout(ui_server: UiServer,
                                                    jobs: dict[str, str]) -> None:
    answer = get(ui_server, f"/jobs?label=tag%3D{jobs['tag']}")
    assert answer.status_code == 200
    page = answer.text
    assert re.search(r'<body data-page="jobs" data-stream-id="\d+-\d+"', page)
    for asset in ('href="/static/vendor/uplot/uPlot.min.css"', 'href="/static/style.css"',
                  'src="/static/vendor/uplot/uPlot.iife.min.js" defer',
                  'src="/static/app.js" defer'):
        assert asset in page
    for link in ('href="/jobs"', 'href="/workers"', 'href="/rejections"'):
        assert link in page
    assert '<div id="connection" class="connection" hidden></div>' in page
    assert '<form id="filters" method="get"' in page
    # newest first
    assert row_ids(page) == [jobs["fed"], jobs["b"], jobs["a2"], jobs["a1"]]
    row = page.split(f'<tr id="job-{jobs["fed"]}"', 1)[1].split("</tr>", 1)[0]
    assert 'data-status="FINISHED_SUCCESSFULLY"' in row and 'data-version="' in row
    cells = re.findall(r'<td class="(c-[a-z]+)"', row)
    assert cells == ["c-id", "c-status", "c-workload", "c-progress", "c-alive", "c-age",
                     "c-error"]
    assert f'<a href="/jobs/{jobs["fed"]}">{jobs["fed"]}</a>' in row
    assert '<span class="status status-FINISHED_SUCCESSFULLY">' in row
    assert '<progress value="2" max="2"></progress> <span>2/2</span>' in row
    assert re.search(r'<time class="age" datetime="[^"]+\+00:00">\d+[smhd]', row)


def test_filters_and_paging(ui_server: UiServer, jobs: dict[str, str]) -> None:
    tag = jobs["tag"]
    page = get(ui_server, f"/jobs?label=tag%3D{tag}&workload=fedavg").text
    assert row_ids(page) == [jobs["fed"]]
    page = get(ui_server, f"/jobs?label=team%3Da&label=tag%3D{tag}").text
    assert row_ids(page) == [jobs["a2"], jobs["a1"]]
    page = get(ui_server, f"/jobs?label=tag%3D{tag}&status=FINISHED_WITH_ERROR").text
    assert row_ids(page) == [] and '<p id="no-jobs">' in page
    seen: list[str] = []
    path = f"/jobs?label=tag%3D{tag}&limit=3"
    first = get(ui_server, path).text
    seen += row_ids(first)
    link = re.search(r'<a id="next-page" href="([^"]+)"', first)
    assert link is not None and len(seen) == 3
    second = get(ui_server, "/jobs" + html.unescape(link.group(1))).text
    seen += row_ids(second)
    assert seen == [jobs["fed"], jobs["b"], jobs["a2"], jobs["a1"]]
    assert 'id="next-page"' not in second
    api = get(ui_server, f"/api/jobs?label=tag%3D{tag}&limit=3").json()
    assert [j["id"] for j in api["jobs"]] == seen[:3] and api["next_cursor"]
    rest = get(ui_server, "/api/jobs", params={"label": f"tag={tag}", "limit": "3",
                                                "cursor": api["next_cursor"]}).json()
    assert [j["id"] for j in rest["jobs"]] == seen[3:] and rest["next_cursor"] is None
    summary = api["jobs"][0]
    assert summary["status"] == "FINISHED_SUCCESSFULLY" and summary["rounds"] == 2
    assert summary["created_at"].endswith("+00:00")


@pytest.mark.parametrize("query", ["status=BOGUS", "cursor=garbage", "label=novalue",
                                   "limit=0", "limit=201", "label=a.b%3Dc"])
def test_bad_filters_are_400_with_the_reason(ui_server: UiServer, query: str) -> None:
    answer = get(ui_server, f"/jobs?{query}")
    assert answer.status_code == 400
    assert '<p class="error" id="filter-error">' in answer.text
    api = get(ui_server, f"/api/jobs?{query}")
    assert api.status_code == 400 and api.json()["error"]


def test_unknown_ids_are_404(ui_server: UiServer, jobs: dict[str, str]) -> None:
    assert get(ui_server, "/jobs/no-such-job").status_code == 404
    assert get(ui_server, "/api/jobs/no-such-job").status_code == 404
    assert get(ui_server, f"/jobs/{jobs['fed']}/checkpoints/999").status_code == 404
    assert get(ui_server, "/jobs/no-such-job/checkpoints/0").status_code == 404
    assert get(ui_server, "/no/such/page").status_code == 404


def test_a_rejected_submission_says_why(ui_server: UiServer, client: SyncClient) -> None:
    import redis  # noqa: PLC0415

    job_id = unique("rej")
    spec = json.dumps({"job_id": job_id, "workload": "noop", "server": {"worker": SERVER},
                       "rounds": 1, "timeouts": {"start_s": -5}})
    connection = redis.Redis.from_url(ui_server.env["ORCHESTRATOR_REDIS_URL"])
    try:
        connection.xadd(f"{ui_server.env['ORCHESTRATOR_NAMESPACE']}:submissions",
                        {"spec": spec})
    finally:
        connection.close()
    for _ in range(100):
        if client.rejections(job_id=job_id):
            break
        import time  # noqa: PLC0415

        time.sleep(0.1)
    answer = get(ui_server, f"/jobs/{job_id}")
    assert answer.status_code == 404
    assert 'id="rejection"' in answer.text and "invalid_spec" in answer.text
    listing = get(ui_server, "/rejections").text
    row = listing.split(f'/jobs/{job_id}"', 1)[1].split("</tr>", 1)[0]
    assert 'class="r-kind">invalid_spec<' in row
    excerpt = re.search(r'<td class="r-excerpt"><code>(.*?)</code>', row, re.S)
    assert excerpt is not None and job_id in html.unescape(excerpt.group(1))
    api = get(ui_server, "/api/rejections").json()["rejections"]
    assert any(r["job_id"] == job_id and r["kind"] == "invalid_spec" for r in api)
    assert get(ui_server, "/rejections?limit=0").status_code == 400


def job_data(page: str) -> dict[str, Any]:
    found = re.search(r'<script type="application/json" id="job-data">(.*?)</script>', page,
                      re.S)
    assert found is not None
    data: dict[str, Any] = json.loads(found.group(1))
    return data


def test_job_page_shows_the_whole_job(ui_server: UiServer, jobs: dict[str, str]) -> None:
    job_id = jobs["fed"]
    answer = get(ui_server, f"/jobs/{job_id}")
    assert answer.status_code == 200
    assert "script-src 'self'" in answer.headers["content-security-policy"]
    assert answer.headers["x-frame-options"] == "DENY"
    page = answer.text
    assert re.search(r'<body data-page="job" data-stream-id="\d+-\d+"', page)
    assert '<span id="status" class="status status-FINISHED_SUCCESSFULLY">' in page
    assert '<dd id="round">2/2</dd>' in page
    assert re.search(r'<dd id="finished"><time datetime="[^"]+\+00:00">'
                     r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC</time>", page)
    data = job_data(page)
    api = get(ui_server, f"/api/jobs/{job_id}").json()
    volatile = {"age_s", "participants"}
    assert {k: v for k, v in data.items() if k not in volatile} == \
        {k: v for k, v in api.items() if k not in volatile}
    timeline = page.split('<ol id="timeline">', 1)[1].split("</ol>", 1)[0]
    assert timeline.count("<li>") == len(api["history"]) == 3
    participants = re.findall(r'<tr data-participant="([^"]+)">', page)
    assert participants == ["server", "client-0", "client-1"]
    for cell in ("p-id", "p-role", "p-state", "p-round", "p-heartbeat", "p-worker"):
        assert page.count(f'<td class="{cell}">') == 3
    assert '<div id="charts"></div>' in page
    charts = api["charts"]
    assert charts["rounds"] == [1, 2]
    sides = [(m["name"], m["side"]) for m in charts["metrics"]]
    assert sides[0] == ("accuracy", "server") and ("loss", "clients") in sides
    assert sides.index(("accuracy", "server")) < sides.index(("loss", "clients"))
    clients_loss = next(m for m in charts["metrics"] if m["name"] == "loss"
                        and m["side"] == "clients")
    assert [s["participant"] for s in clients_loss["series"]] == ["client-0", "client-1"]
    assert all(len(s["values"]) == 2 for s in clients_loss["series"])
    rows = re.findall(r'<tr data-round="(\d+)" data-participant="([^"]+)">', page)
    assert len(rows) == len(api["checkpoints"]) >= 2
    assert f'<a class="download" href="/jobs/{job_id}/checkpoints/0">download</a>' in page
    sha = api["checkpoints"][0]["sha256"]
    assert f'<td class="k-sha256"><code>{sha}</code></td>' in page
    assert f'data-bytes="{api["checkpoints"][0]["size"]}"' in page
    events = page.split('<pre id="events">', 1)[1].split("</pre>", 1)[0]
    assert "FINISHED_SUCCESSFULLY" in events and len(api["events"]) >= 3
    assert '<section id="logs">' in page and list(api["logs"]) == participants
    assert re.findall(r'<pre class="log" data-participant="([^"]+)">', page) == participants
    assert 'class="log" data-participant="server"' in page
    assert api["can_cancel"] is False and 'id="cancel"' not in page
    assert "presigned" not in page.lower() and "X-Amz-" not in page


def test_download_link_returns_the_manifest_bytes(ui_server: UiServer,
                                                  jobs: dict[str, str]) -> None:
    rows = get(ui_server, f"/api/jobs/{jobs['fed']}").json()["checkpoints"]
    for index, row in enumerate(rows):
        answer = get(ui_server, f"/jobs/{jobs['fed']}/checkpoints/{index}",
                     follow_redirects=False)
        assert answer.status_code == 307
        target = answer.headers["location"]
        assert "X-Amz-Expires=300" in target
        body = httpx.get(target, timeout=20)
        assert body.status_code == 200
        assert hashlib.sha256(body.content).hexdigest() == row["sha256"]
        assert len(body.content) == row["size"]


def test_workers_page_and_json(ui_server: UiServer) -> None:
    page = get(ui_server, "/workers").text
    assert re.findall(r'<tr data-worker="([^"]+)">', page) == sorted([SERVER, *CLIENTS])
    row = page.split(f'<tr data-worker="{SERVER}">', 1)[1].split("</tr>", 1)[0]
    assert '<td class="w-role">server</td>' in row
    assert re.search(r'<td class="w-heartbeat"><time class="age" datetime=', row)
    assert re.search(r'<td class="w-running">\d+/\d+</td>', row)
    assert "fedavg" in row.split('class="w-workloads">', 1)[1]
    api = get(ui_server, "/api/workers").json()["workers"]
    assert {w["name"] for w in api} == {SERVER, *CLIENTS}


def test_user_text_is_escaped(ui_server: UiServer, jobs: dict[str, str]) -> None:
    page = get(ui_server, f"/jobs/{jobs['a2']}").text
    assert XSS not in page
    assert html.escape(XSS, quote=False) in page
    script = page.split('id="job-data">', 1)[1].split("</script>", 1)[0]
    assert "\\u003cscript\\u003e" in script and "<" not in script
    assert job_data(page)["labels"]["note"] == XSS


def test_no_credential_in_any_answer(ui_server: UiServer, jobs: dict[str, str]) -> None:
    env = ui_server.env
    secrets = [env["AWS_SECRET_ACCESS_KEY"], env["ORCHESTRATOR_DAEMON_KEY"],
               env["AWS_ACCESS_KEY_ID"]]
    paths = ["/jobs", "/workers", "/rejections", "/api/jobs", "/api/workers",
             "/api/rejections", "/no/such/page", "/jobs?status=BOGUS"]
    for job_id in (jobs["fed"], jobs["a1"]):
        paths += [f"/jobs/{job_id}", f"/api/jobs/{job_id}"]
    bodies = [get(ui_server, p).text for p in paths]
    with httpx.stream("GET", ui_server.url + "events", params={"view": "workers"},
                      timeout=20) as stream:
        chunks = []
        for chunk in stream.iter_text():
            chunks.append(chunk)
            if "event: workers" in "".join(chunks):
                break
    bodies.append("".join(chunks))
    assert "event: workers" in bodies[-1]
    for body in bodies:
        for secret in secrets:
            assert secret not in body
