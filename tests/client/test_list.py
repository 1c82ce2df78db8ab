"""``Client.list``: filters (status, workload, labels, creation time) and paging (cursor, skip
and limit) on the job store's indexed query, against the Mongo wire stand-in (a separate
process) and the in-memory twin, which must agree; and ``orchestrator list`` with the same
filters through the real entry point."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from helpers import run_cli, subprocess_env, unique

from orchestrator.client import Client
from orchestrator.core import Job, JobSpec, JobStatus, new_job
from orchestrator.errors import InvalidSpecError, PermanentError
from orchestrator.settings import Settings
from orchestrator.store import JobQuery, MemoryJobStore, connect_mongo

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
WORKLOADS = ("noop", "sleep", "fedavg")


def _job(i: int) -> Job:
    spec = JobSpec.model_validate({
        "job_id": f"job-{i:02d}", "workload": WORKLOADS[i % 3],
        "server": {"worker": "srv"}, "labels": {"team": "a" if i % 2 else "b",
                                                "run": str(i // 4)}})
    job = new_job(spec.job_id or "", spec, T0 + timedelta(minutes=i // 2))  # pairs share a time
    return replace(job, status=JobStatus.FINISHED_CANCELLED) if i % 5 == 0 else job


JOBS = [_job(i) for i in range(20)]


def newest_first(jobs: list[Job]) -> list[str]:
    return [j.id for j in sorted(jobs, key=lambda j: (j.created_at, j.id), reverse=True)]


@pytest.fixture(scope="module")
def world(stack_env: dict[str, str]) -> dict[str, str]:
    return subprocess_env(stack_env, ORCHESTRATOR_NAMESPACE=unique("list"),
                          ORCHESTRATOR_MONGO_DB=unique("listdb").replace("-", "_"))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def filled(world: dict[str, str]) -> dict[str, str]:
    store = connect_mongo(world["ORCHESTRATOR_MONGO_URL"], world["ORCHESTRATOR_MONGO_DB"])
    try:
        await store.ensure_indexes()
        assert await store.insert_many(JOBS) == [None] * len(JOBS)
    finally:
        await store.close()
    return world


@pytest_asyncio.fixture(loop_scope="session")
async def client(filled: dict[str, str]) -> AsyncIterator[Client]:
    settings = Settings(redis_url=filled["ORCHESTRATOR_REDIS_URL"],
                        mongo_url=filled["ORCHESTRATOR_MONGO_URL"],
                        mongo_db=filled["ORCHESTRATOR_MONGO_DB"],
                        namespace=filled["ORCHESTRATOR_NAMESPACE"])
    async with Client(settings) as c:
        yield c


CASES: list[tuple[str, dict[str, object]]] = [
    ("all", {}),
    ("status", {"status": "finished_cancelled"}),
    ("workload", {"workload": "sleep"}),
    ("label", {"labels": {"team": "a"}}),
    ("two labels", {"labels": {"team": "b", "run": "2"}}),
    ("after", {"created_after": T0 + timedelta(minutes=6)}),
    ("before", {"created_before": T0 + timedelta(minutes=3)}),
    ("combined", {"workload": "noop", "labels": {"team": "b"},
                  "created_after": T0 + timedelta(minutes=1)}),
]


def _query(filters: dict[str, object]) -> JobQuery:
    labels: dict[str, str] = filters.get("labels") or {}  # type: ignore[assignment]
    status = filters.get("status")
    return JobQuery(status=None if status is None else JobStatus(str(status).upper()),
                    workload=filters.get("workload"),  # type: ignore[arg-type]
                    labels=tuple(sorted(labels.items())),
                    created_after=filters.get("created_after"),  # type: ignore[arg-type]
                    created_before=filters.get("created_before"))  # type: ignore[arg-type]


@pytest.mark.parametrize(("name", "filters"), CASES, ids=[c[0] for c in CASES])
async def test_filters_select_the_matching_jobs_newest_first(
        client: Client, name: str, filters: dict[str, object]) -> None:
    query = _query(filters)
    expected = newest_first([j for j in JOBS if query.matches(j)])
    assert expected, f"case {name} selects nothing: it could not fail"
    assert len(expected) < len(JOBS) or name == "all"
    page = await client.list(limit=100, **filters)  # type: ignore[arg-type]
    assert [j.id for j in page.jobs] == expected
    assert page.next_cursor is None
    memory = MemoryJobStore()  # the in-memory twin answers the same query the same way
    await memory.insert_many(JOBS)
    assert [j.id for j in await memory.find_jobs(query, limit=100)] == expected


async def test_cursor_pages_cover_every_job_once_in_order(client: Client) -> None:
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = await client.list(limit=3, cursor=cursor)
        assert len(page.jobs) <= 3
        seen += [j.id for j in page.jobs]
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == newest_first(JOBS)  # equal creation times are ordered by id, not lost
    assert pages == 7


async def test_skip_and_limit_page_too_and_filters_combine_with_the_cursor(
        client: Client) -> None:
    everything = newest_first(JOBS)
    page = await client.list(limit=4, skip=6)
    assert [j.id for j in page.jobs] == everything[6:10]
    assert page.next_cursor is not None
    first = await client.list(workload="noop", limit=2)
    rest = await client.list(workload="noop", limit=100, cursor=first.next_cursor)
    noop = newest_first([j for j in JOBS if j.spec.workload == "noop"])
    assert [j.id for j in first.jobs + rest.jobs] == noop


async def test_bad_filters_are_clear_errors(client: Client) -> None:
    with pytest.raises(InvalidSpecError, match="not a job list cursor"):
        await client.list(cursor="garbage")
    with pytest.raises(PermanentError, match="unknown status"):
        await client.list(status="RUNNING")
    for key in ("a.b", "$where", ""):
        with pytest.raises(PermanentError, match="label key"):
            await client.list(labels={key: "x"})


def test_the_list_command_filters_and_pages(filled: dict[str, str]) -> None:
    result = run_cli("list", "--workload", "sleep", "--label", "team=a", "--json", env=filled)
    assert result.returncode == 0, result.stderr
    expected = newest_first([j for j in JOBS if j.spec.workload == "sleep"
                             and j.spec.labels["team"] == "a"])
    assert [r["id"] for r in json.loads(result.stdout)] == expected

    result = run_cli("list", "--created-before", "2026-11-01T12:02:00", "--json", env=filled)
    assert [r["id"] for r in json.loads(result.stdout)] == ["job-03", "job-02", "job-01",
                                                            "job-00"]
    page = run_cli("list", "--limit", "5", env=filled)
    assert page.returncode == 0, page.stderr
    assert "more: orchestrator list --cursor" in page.stdout
    cursor = page.stdout.split("--cursor '", 1)[1].split("'", 1)[0]
    rest = run_cli("list", "--limit", "100", "--cursor", cursor, "--json", env=filled)
    assert [r["id"] for r in json.loads(rest.stdout)] == newest_first(JOBS)[5:]

    bad = run_cli("list", "--label", "nolabel", env=filled)
    assert bad.returncode == 2
    assert "KEY=VALUE" in bad.stderr
