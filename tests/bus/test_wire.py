"""``orchestrator.bus.wire``: entries from XREADGROUP replies, submission job ids, the client
``connect_redis`` builds and the translation of redis-py errors."""

from __future__ import annotations

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from orchestrator.bus import Entry, connect_redis, submission_job_id, translated
from orchestrator.bus.wire import dead_letter_fields, decode_fields, entries_of_reply
from orchestrator.errors import BusError, BusUnavailableError

RESP2 = [
    [b"s:0", [[b"1-0", [b"event", "é".encode(), b"x", b"y"]]]],
    [b"s:1", [[b"2-0", [b"event", b"2"]], [b"2-1", None]]],
]
RESP3 = {b"s:0": RESP2[0][1], b"s:1": RESP2[1][1]}


@pytest.mark.parametrize("reply", [RESP2, RESP3], ids=["resp2", "resp3"])
def test_entries_of_either_protocol_in_order_with_deleted_ones_empty(reply: object) -> None:
    assert entries_of_reply(reply, deliveries=3) == [
        Entry("s:0", "1-0", {"event": "é", "x": "y"}, 3),
        Entry("s:1", "2-0", {"event": "2"}, 3),
        Entry("s:1", "2-1", {}, 3),
    ]


def test_nothing_read_is_no_entries() -> None:
    assert entries_of_reply(None) == entries_of_reply([]) == entries_of_reply({}) == []


def test_fields_decode_as_utf8_replacing_what_is_not() -> None:
    assert decode_fields([b"k", b"\xff", "s", "t"]) == {"k": "\ufffd", "s": "t"}
    assert decode_fields(None) == decode_fields([]) == {}


def test_an_entry_is_a_plain_named_tuple() -> None:
    entry = Entry("s", "1-0", {"a": "b"})
    assert entry.deliveries == 1
    assert tuple(entry) == ("s", "1-0", {"a": "b"}, 1)
    assert entry._replace(deliveries=2) == Entry("s", "1-0", {"a": "b"}, 2)


def test_submission_job_ids_are_stable_across_versions_and_namespaces() -> None:
    """A redelivered submission must name the same job as before (also after an upgrade)."""
    assert submission_job_id("1700000000000-0") == "ae569e59acaa58ddbf7e9f6185f95b39"
    assert submission_job_id("1700000000000-0", "ns") == "92a9cdeeaba65ed8a833501ce7c94e5d"
    assert submission_job_id("1700000000000-1") != submission_job_id("1700000000000-0")


def test_a_dead_letter_copy_carries_entry_reason_and_reader() -> None:
    fields = dead_letter_fields(Entry("s", "1-0", {"k": "v"}, 6), "x" * 5000, "g", "c")
    assert {k: v for k, v in fields.items() if k != "at"} == {
        "stream": "s", "id": "1-0", "fields": '{"k":"v"}', "reason": "x" * 4096,
        "deliveries": "6", "group": "g", "consumer": "c"}
    assert fields["at"].endswith("+00:00")


async def test_the_client_is_configured_for_the_bus() -> None:
    client = connect_redis("redis://127.0.0.1:1/0", password="pw")
    try:
        kwargs = client.connection_pool.connection_kwargs
        assert kwargs["decode_responses"] is False
        assert kwargs["socket_timeout"] is None, "no asyncio.timeout() around every reply"
        assert kwargs["health_check_interval"] == 10
        assert kwargs["password"] == "pw"
        assert kwargs["retry"] is not None
    finally:
        await client.aclose()


async def test_redis_errors_become_ours() -> None:
    with pytest.raises(BusUnavailableError, match="unreachable during submit"):
        async with translated("submit"):
            raise RedisConnectionError("gone")
    with pytest.raises(BusUnavailableError):
        async with translated("submit"):
            raise OSError("no route")
    with pytest.raises(BusError, match="refused submit: OOM") as refused:
        async with translated("submit"):
            raise ResponseError("OOM command not allowed")
    assert not isinstance(refused.value, BusUnavailableError)
    async with translated("nothing"):
        pass
