"""``/events`` against a live system through a real uvicorn: a job submitted after the stream
opened arrives as ``event: job``; a stream resumed with ``Last-Event-ID`` replays what was
missed and nothing twice; a trimmed position is ``event: reset``; the job view sends the
job's detail as it runs; the workers view the table; closed streams give their Redis
connections back; bad parameters are 400."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis
from helpers import unique

from orchestrator.client import SyncClient
from orchestrator.client.updates import entry_key
from tests.ui.conftest import CLIENTS, SERVER
from tests.ui.support import FEDAVG_CLIENT, FEDAVG_SERVER, UiServer, job_spec, settings_of


@dataclass
class Message:
    event: str
    data: Any
    id: str | None


class Events:
    """An open ``/events`` stream, read message by message (comments kept as ``comment``)."""

    def __init__(self, ui: UiServer, params: dict[str, str],
                 headers: dict[str, str] | None = None) -> None:
        self.http = httpx.Client(timeout=httpx.Timeout(20.0))
        self.context = self.http.stream("GET", ui.url + "events", params=params,
                                        headers=headers or {})
        self.response = self.context.__enter__()
        self.lines = self.response.iter_lines()
        self.retry: str | None = None

    def next(self) -> Message:
        fields: dict[str, str] = {}
        while True:
            line = next(self.lines)
            if line == "":
                if fields:
                    return Message(fields.get("event", "message"),
                                   json.loads(fields["data"]) if "data" in fields else None,
                                   fields.get("id"))
                continue
            if line.startswith(":"):
                return Message("comment", line[1:].strip(), None)
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "retry":
                self.retry = value
                continue
            fields[name] = value

    def until(self, done: Any, timeout_s: float = 60) -> list[Message]:
        """Messages (comments left out) until ``done(message)``."""
        got: list[Message] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            message = self.next()
            if message.event == "comment":
                continue
            got.append(message)
            if done(message):
                return got
        raise AssertionError(f"not done within {timeout_s}s: {got}")

    def close(self) -> None:
        self.context.__exit__(None, None, None)
        self.http.close()


@pytest.fixture(scope="module")
def client(ui_server: UiServer) -> Iterator[SyncClient]:
    with SyncClient(settings_of(ui_server.env)) as sync:
        yield sync


def finished(job_id: str) -> Any:
    return lambda m: m.event == "job" and m.data["id"] == job_id and \
        m.data["status"].startswith("FINISHED")


def test_a_job_submitted_after_connecting_arrives(ui_server: UiServer,
                                                  client: SyncClient) -> None:
    events = Events(ui_server, {"view": "jobs"})
    try:
        assert events.response.headers["content-type"].startswith("text/event-stream")
        assert events.response.headers["cache-control"] == "no-cache"
        assert events.response.headers["x-accel-buffering"] == "no"
        first = events.next()  # the position is taken before the first line
        assert events.retry == "2000" and first.event == "comment"
        job_id = unique("sse")
        client.submit(job_spec(job_id, "noop", server=SERVER, clients=CLIENTS))
        got = events.until(finished(job_id))
    finally:
        events.close()
    mine = [m for m in got if m.event == "job" and m.data["id"] == job_id]
    assert mine and all(m.id is not None for m in mine)
    versions = [m.data["version"] for m in mine]
    assert versions == sorted(versions)
    assert mine[-1].data["status"] == "FINISHED_SUCCESSFULLY"


def test_filters_of_the_jobs_view(ui_server: UiServer, client: SyncClient) -> None:
    tag = unique("f")
    # (status is the page's to filter: the stream sends every status)
    events = Events(ui_server, {"view": "jobs", "label": f"tag={tag}",
                                "status": "FINISHED_WITH_ERROR"})
    try:
        events.next()
        other = unique("other")
        client.submit(job_spec(other, "noop", server=SERVER, clients=CLIENTS))
        client.wait(other, timeout_s=60)
        mine = unique("mine")
        client.submit(job_spec(mine, "noop", server=SERVER, clients=CLIENTS,
                               labels={"tag": tag}))
        got = events.until(finished(mine))
    finally:
        events.close()
    assert {m.data["id"] for m in got if m.event == "job"} == {mine}


def test_resuming_replays_what_was_missed_and_nothing_twice(ui_server: UiServer,
                                                             client: SyncClient) -> None:
    start = client.call(lambda: client_updates_position(client))
    first, second = unique("r1"), unique("r2")
    events = Events(ui_server, {"view": "jobs", "after": start})
    try:
        client.submit(job_spec(first, "noop", server=SERVER, clients=CLIENTS))
        client.wait(first, timeout_s=60)
        client.submit(job_spec(second, "noop", server=SERVER, clients=CLIENTS))
        got = events.until(finished(second))
    finally:
        events.close()
    ids = [m.id for m in got if m.id is not None]
    assert ids == sorted(ids, key=entry_key) and len(ids) >= 2
    # resume from the end of the first job's messages: only what came after it is sent
    cut = next(m.id for m in got if m.event == "job" and m.data["id"] == first
               and m.data["status"].startswith("FINISHED"))
    assert cut is not None
    resumed = Events(ui_server, {"view": "jobs", "after": "0-0"},
                     headers={"Last-Event-ID": cut})
    try:
        again = resumed.until(finished(second))
    finally:
        resumed.close()
    assert again and all(m.id is not None and entry_key(m.id) > entry_key(cut)
                         for m in again)
    # The first job's entries up to the cut are not sent again. (A summary is the job as
    # stored when its batch is sent, so one sent before the cut may already have shown the
    # state of a later entry; that entry, after the cut, repeats it: same version, which the
    # page ignores — never an older one.)
    final_first = max(m.data["version"] for m in got
                      if m.event == "job" and m.data["id"] == first)
    assert all(m.data["version"] == final_first for m in again
               if m.event == "job" and m.data["id"] == first)
    # (a message's id is its batch's last entry: a resumed read takes the missed entries in
    # larger batches, so its last id may lie past the live stream's, never before it)
    assert again[-1].id is not None and got[-1].id is not None
    assert entry_key(again[-1].id) >= entry_key(got[-1].id)
    assert again[-1].data["version"] == got[-1].data["version"]


def client_updates_position(client: SyncClient) -> Any:
    from orchestrator.client import Client  # noqa: PLC0415

    async def position() -> str:
        async with Client(client.settings) as own:
            return await own.updates_position()

    return position()


def test_a_trimmed_position_resets(ui_server: UiServer, client: SyncClient) -> None:
    job_id = unique("trim")
    client.submit(job_spec(job_id, "noop", server=SERVER, clients=CLIENTS))
    client.wait(job_id, timeout_s=60)
    stream = f"{ui_server.env['ORCHESTRATOR_NAMESPACE']}:updates"
    connection = redis.Redis.from_url(ui_server.env["ORCHESTRATOR_REDIS_URL"])
    try:
        oldest = connection.xrange(stream, count=1)[0][0].decode()
    finally:
        connection.close()
    ms, _, seq = oldest.partition("-")
    older = f"{int(ms) - 1}-{seq}"  # before the first entry: what was there is gone
    events = Events(ui_server, {"view": "jobs", "after": older})
    try:
        assert events.until(lambda m: True)[0].event == "reset"
        with pytest.raises(StopIteration):  # and the stream ends
            events.until(lambda m: True, timeout_s=5)
    finally:
        events.close()


def test_the_job_view_follows_a_running_job(ui_server: UiServer,
                                            client: SyncClient) -> None:
    job_id = unique("detail")
    position = client.call(lambda: client_updates_position(client))
    events = Events(ui_server, {"view": "job", "job": job_id, "after": position})
    try:
        client.submit(job_spec(job_id, "fedavg", server=SERVER, clients=CLIENTS, rounds=2,
                               # (paced: two rounds of milliseconds could share a batch)
                               config={**FEDAVG_SERVER, "min_round_s": 1.0},
                               client_config=FEDAVG_CLIENT))
        got = events.until(lambda m: m.event == "detail"
                           and m.data["status"] == "FINISHED_SUCCESSFULLY")
    finally:
        events.close()
    details = [m.data for m in got if m.event == "detail"]
    assert all(d["id"] == job_id for d in details)
    assert details[-1]["charts"]["rounds"] == [1, 2]
    grown = [len(d["charts"]["rounds"]) for d in details]
    assert grown == sorted(grown) and len(set(grown)) >= 2  # points arrive round by round
    assert {"charts", "events", "logs", "can_cancel", "checkpoints"} <= set(details[-1])
    # the notes the stream kept are those a fresh read finds, in order, once each
    fresh = httpx.get(ui_server.url + f"api/jobs/{job_id}", timeout=10).json()["events"]
    assert [e["entry_id"] for e in details[-1]["events"]] == [e["entry_id"] for e in fresh]


def test_the_workers_view_sends_the_table(ui_server: UiServer) -> None:
    events = Events(ui_server, {"view": "workers"})
    try:
        got = events.until(lambda m: m.event == "workers", timeout_s=15)
    finally:
        events.close()
    names = {w["name"] for w in got[-1].data["workers"]}
    assert names == {SERVER, *CLIENTS}


def connected_clients(ui: UiServer) -> int:
    connection = redis.Redis.from_url(ui.env["ORCHESTRATOR_REDIS_URL"])
    try:
        return int(connection.info("clients")["connected_clients"])
    finally:
        connection.close()


def test_closed_streams_give_their_connections_back(ui_server: UiServer) -> None:
    def round_of_streams() -> None:
        streams = [Events(ui_server, {"view": "jobs"}) for _ in range(4)]
        for stream in streams:
            stream.next()  # (after the position was read; the block follows)
        for stream in streams:
            stream.close()
        time.sleep(2.5)  # a keep-alive write fails after a block (1 s): the streams end

    round_of_streams()
    after_first = connected_clients(ui_server)
    round_of_streams()
    assert connected_clients(ui_server) <= after_first + 1
    assert get_ok(ui_server)


def get_ok(ui: UiServer) -> bool:
    return httpx.get(ui.url + "api/workers", timeout=10).status_code == 200


@pytest.mark.parametrize("query", [{"view": "nope"}, {"view": "job"},
                                   {"view": "jobs", "after": "garbage"},
                                   {"view": "jobs", "label": "novalue"}])
def test_bad_parameters_are_400(ui_server: UiServer, query: dict[str, str]) -> None:
    assert httpx.get(ui_server.url + "events", params=query, timeout=10).status_code == 400
