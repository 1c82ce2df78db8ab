"""The catalogue of bad submissions: every kind refused alone, with its recorded reason.

``CATALOGUE`` is test_intake.py's ``BAD`` plus ``MORE``: ways a spec can be wrong in its
encoding (bad UTF-8, lone surrogates, trailing bytes), its shape (not an object, null, wrong
types per field, unknown fields at any level), its names (empty, too long, bad characters),
its numbers (NaN, infinities, zero or negative deadlines, limits passed) and its limits
(too many clients, labels, config bytes). Each is checked alone by ``parse_submission``, and
all of them together are pipelined with good submissions into a real daemon: each bad entry
gets a rejection record (kind and reason asserted) and a dead letter, each good one a job that
completes.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from orchestrator.bus import Entry, Redis
from orchestrator.bus.keys import Keys
from orchestrator.core import JobStatus
from orchestrator.daemon.intake import Refused, parse_submission
from orchestrator.store import MemoryJobStore
from tests.daemon.harness import (
    daemon_running,
    dead_letters,
    fast_options,
    job_spec,
    running,
    wait_finished,
    workers_for,
)
from tests.daemon.test_intake import BAD, spec_with

Fields = dict[str, str | bytes]


def without(field: str, job_id: str) -> str:
    spec = json.loads(spec_with(job_id=job_id))
    del spec[field]
    return json.dumps(spec)


def server(**fields: Any) -> dict[str, Any]:
    return {"worker": "srv", **fields}


#: (kind expected, entry fields, a phrase the reason must contain) — beyond ``BAD``.
MORE: list[tuple[str, Fields, str]] = [
    # encoding and shape
    ("not_json", {"spec": ""}, "not valid JSON"),
    ("not_json", {"spec": spec_with(job_id="m1") + "}"}, "Extra data"),
    ("not_json", {"spec": b"\xff\xfe" + spec_with(job_id="m2").encode()}, "not valid JSON"),
    ("invalid_spec", {"spec": spec_with(job_id="m3").replace('"srv"', '"sr\\udc00v"')},
     "unable to parse raw data as a unicode string"),
    ("invalid_spec", {"spec": spec_with(job_id="m4").encode().replace(b'"srv"', b'"sr\xffv"')},
     "server.worker: String should match pattern"),
    ("not_object", {"spec": "42"}, "got int"),
    ("not_object", {"spec": '"a spec"'}, "got str"),
    ("not_object", {"spec": "null"}, "got NoneType"),
    # wrong types per field
    ("invalid_spec", {"spec": spec_with(job_id="m5", workload=123)},
     "workload: Input should be a valid string"),
    ("invalid_spec", {"spec": spec_with(job_id="m6", clients="many")},
     "clients: Input should be a valid list"),
    ("invalid_spec", {"spec": spec_with(job_id="m7", timeouts="fast")},
     "timeouts: Input should be a valid dictionary"),
    ("invalid_spec", {"spec": spec_with(job_id="m8", labels=["a"])},
     "labels: Input should be a valid dictionary"),
    ("invalid_spec", {"spec": spec_with(job_id="m9", server="srv")},
     "server: Input should be a valid dictionary"),
    ("invalid_spec", {"spec": spec_with(job_id="m10", rounds=1.5)},
     "rounds: Input should be a valid integer"),
    ("invalid_spec", {"spec": spec_with(job_id="m11", server=server(config=[1]))},
     "server.config: Input should be a valid dictionary"),
    # missing and unknown fields
    ("invalid_spec", {"spec": without("workload", "m12")}, "workload: Field required"),
    ("invalid_spec", {"spec": without("server", "m13")}, "server: Field required"),
    ("unknown_field", {"spec": spec_with(job_id="m14", server=server(gpu=1))},
     "server.gpu: Extra inputs are not permitted"),
    ("unknown_field", {"spec": spec_with(job_id="m15", timeouts={"forever": True})},
     "timeouts.forever: Extra inputs are not permitted"),
    ("invalid_spec", {"spec": spec_with(job_id="m16", server=server(config={"a": 1}),
                                        server_config={"b": 2})},
     "configuration is given twice"),
    # names: empty, too long, bad characters
    ("bad_job_id", {"spec": spec_with(job_id="")}, "job_id: String should have at least 1"),
    ("bad_job_id", {"spec": spec_with(job_id="j" * 300)}, "at most 128 characters"),
    ("invalid_spec", {"spec": spec_with(job_id="m17", server={"worker": ""})},
     "server.worker: String should have at least 1 character"),
    ("invalid_spec", {"spec": spec_with(job_id="m18", server={"worker": "w" * 300})},
     "server.worker: String should have at most 128 characters"),
    ("invalid_spec", {"spec": spec_with(job_id="m19", server={"worker": "srv one"})},
     "server.worker: String should match pattern"),
    ("invalid_spec", {"spec": spec_with(job_id="m20", clients=[{"worker": "a|b"}])},
     "clients[0].worker: String should match pattern"),
    ("invalid_spec", {"spec": spec_with(job_id="m21", workload="Bad Name!")},
     "workload: String should match pattern"),
    ("invalid_spec", {"spec": spec_with(job_id="m22", model="m" * 300)},
     "model: String should have at most 256 characters"),
    ("invalid_spec", {"spec": spec_with(job_id="m23", server=server(data_path="d" * 5000))},
     "server.data_path: String should have at most 4096 characters"),
    # numbers: not finite, zero, negative, past the limit
    ("invalid_spec", {"spec": spec_with(job_id="m24", server_config={"lr": float("-inf")})},
     "server.config: not a finite number at lr"),
    ("invalid_spec", {"spec": spec_with(job_id="m25",
                                        timeouts={"job_s": float("inf")})},
     "timeouts.job_s: not a finite number"),
    ("invalid_spec", {"spec": spec_with(job_id="m26", timeouts={"start_s": 0})},
     "timeouts.start_s: Input should be greater than 0"),
    ("invalid_spec", {"spec": spec_with(job_id="m27", timeouts={"cancel_grace_s": -5})},
     "timeouts.cancel_grace_s: Input should be greater than 0"),
    ("invalid_spec", {"spec": spec_with(job_id="m28", timeouts={"job_s": 1e9})},
     "timeouts.job_s: Input should be less than or equal to 2592000"),
    ("invalid_spec", {"spec": spec_with(job_id="m29", timeouts={"heartbeat_s": 4000})},
     "timeouts.heartbeat_s: Input should be less than or equal to 3600"),
    ("invalid_spec", {"spec": spec_with(job_id="m30", min_clients=-1)},
     "min_clients: Input should be greater than or equal to 0"),
    ("invalid_spec", {"spec": spec_with(job_id="m31", rounds=0)},
     "rounds: Input should be greater than or equal to 1"),
    ("invalid_spec", {"spec": spec_with(job_id="m32", rounds=10**6)},
     "rounds: Input should be less than or equal to 100000"),
    # limits: clients, labels, config bytes, the entry's own fields
    ("invalid_spec", {"spec": spec_with(job_id="m33",
                                        clients=[{"worker": f"c{i}"} for i in range(1001)])},
     "clients: List should have at most 1000 items"),
    ("invalid_spec", {"spec": spec_with(job_id="m34", labels={f"k{i}": "v" for i in range(33)})},
     "labels: Dictionary should have at most 32 items"),
    ("invalid_spec", {"spec": spec_with(job_id="m35", labels={"k": "v" * 257})},
     "labels.k: String should have at most 256 characters"),
    ("invalid_spec", {"spec": spec_with(job_id="m36", labels={"k" * 65: "v"})},
     "[key]: String should have at most 64 characters"),
    ("invalid_spec", {"spec": spec_with(job_id="m37", clients=[
        {"worker": "cli0", "config": {"b": "z" * 70_000}}])},
     "clients[0].config: Value error, participant config is"),
    ("invalid_idempotency_key", {"spec": spec_with(job_id="m38"), "idempotency_key": ""},
     "got 0 characters"),
    ("oversize", {"spec": spec_with(job_id="m39") + " " * 300_000}, "the limit is 262144"),
]

CATALOGUE: list[tuple[str, Fields, str]] = [
    *((kind, dict[str, str | bytes](fields), phrase) for kind, fields, phrase in BAD), *MORE]


def decoded(fields: Fields) -> dict[str, str]:
    """The fields as the bus hands them to intake (bytes decoded as UTF-8, replacing)."""
    return {k: v.decode("utf-8", "replace") if isinstance(v, bytes) else v
            for k, v in fields.items()}


def test_the_catalogue_holds_at_least_30_kinds_each_distinct() -> None:
    assert len(CATALOGUE) >= 30
    payloads = [json.dumps(decoded(fields), sort_keys=True) for _, fields, _ in CATALOGUE]
    assert len(set(payloads)) == len(payloads), "every entry of the catalogue is another case"


@pytest.mark.parametrize(("kind", "fields", "phrase"), MORE,
                         ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(MORE)])
def test_each_is_refused_with_its_reason(kind: str, fields: Fields, phrase: str) -> None:
    result = parse_submission(Entry("s", "1-0", decoded(fields)), max_bytes=256 * 1024,
                              namespace="ns")
    assert isinstance(result, Refused), result
    assert result.kind == kind, result.reason
    assert phrase in result.reason, result.reason


@pytest.mark.fault(f"{len(CATALOGUE)} kinds of bad submission pipelined with good ones",
                   invariants=(4, 5, 8))
async def test_every_kind_pipelined_between_good_submissions_is_rejected_alone(
        redis: Redis, keys: Keys) -> None:
    store = MemoryJobStore()
    good = [f"good-{i}" for i in range(6)]
    every = max(1, len(CATALOGUE) // (len(good) - 1))
    async with (daemon_running(store, redis, fast_options(keys.namespace)) as daemon,
                running(*(w.run for w in workers_for(redis, keys, clients=1)))):
        pipe = redis.pipeline(transaction=False)
        order: list[int | str] = []  # a catalogue index, or a good job's id
        for index in range(len(CATALOGUE)):
            if index % every == 0:
                order.append(good[len([o for o in order if isinstance(o, str)])])
            order.append(index)
        order.extend(g for g in good if g not in order)
        for item in order:
            if isinstance(item, str):
                pipe.xadd(keys.submissions,
                          {"spec": job_spec(item, clients=1, rounds=1).model_dump_json()})
            else:
                pipe.xadd(keys.submissions, dict(CATALOGUE[item][1]))  # type: ignore[arg-type]
        ids = await pipe.execute()
        jobs = [await wait_finished(store, job_id) for job_id in good]
        stats = daemon.stats
    entry_of = {item: (i.decode() if isinstance(i, bytes) else i)
                for item, i in zip(order, ids, strict=True)}
    assert [j.status for j in jobs] == [JobStatus.FINISHED_SUCCESSFULLY] * len(good)
    rejections = {r.entry_id: r for r in await store.rejections(limit=1000)}
    assert len(rejections) == len(CATALOGUE)
    for index, (kind, _, phrase) in enumerate(CATALOGUE):
        row = rejections[entry_of[index]]
        assert (row.kind, row.source) == (kind, keys.submissions), (index, row)
        assert phrase in row.reason, (index, row.reason)
    letters = await dead_letters(redis, keys)
    assert {d["id"] for d in letters} == set(rejections)
    assert stats.rejections == len(CATALOGUE)
    assert stats.submissions_accepted == len(good)
    assert sorted(j.id for j in await store.find_by_status(limit=100)) == sorted(good)
    assert await redis.xlen(keys.submissions) == len(order)
