"""Bad submissions: each one a clear recorded rejection; the daemon carries on."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from orchestrator.bus import Bus, Entry, Redis, submission_job_id
from orchestrator.bus.keys import Keys
from orchestrator.cli.common import BadInput
from orchestrator.cli.submit import validate_spec
from orchestrator.cli.worker import checked_data_root, worker
from orchestrator.core import JobStatus
from orchestrator.daemon.intake import Accepted, Refused, parse_submission
from orchestrator.devstack.servers import ServerProcess
from orchestrator.store import MongoJobStore, connect_mongo
from tests.daemon.harness import (
    daemon_running,
    dead_letters,
    fast_options,
    job_spec,
    running,
    wait_finished,
    workers_for,
)
from tests.helpers import unique

GOOD = job_spec("good", clients=1).to_json_dict()


def spec_with(**changes: Any) -> str:
    return json.dumps({**GOOD, **changes})


NESTED = json.loads("[" * 40 + "]" * 40)
WIDE = {"blob": list(range(10_000))}
DUPLICATE = spec_with(job_id="x14").replace('"timeouts": {', '"timeouts": {"round_s": 5, ', 1)
NAN = spec_with(job_id="x18", timeouts={"round_s": float("nan")})  # json writes NaN


# (kind expected, entry fields, a phrase the reason must contain)
BAD: list[tuple[str, dict[str, str], str]] = [
    ("not_json", {"spec": "{not json"}, "not valid JSON"),
    ("not_object", {"spec": "[1, 2, 3]"}, "JSON object"),
    ("missing_spec", {"job": spec_with(job_id="x1")}, "no 'spec' field"),
    ("unknown_field", {"spec": spec_with(job_id="x2"), "priority": "high"}, "priority"),
    ("invalid_spec", {"spec": spec_with(job_id="x3", rounds="many")}, "rounds"),
    ("invalid_spec", {"spec": spec_with(job_id="x4", server=None)}, "server"),
    ("unknown_field", {"spec": spec_with(job_id="x5", script="rm -rf /")}, "script"),
    ("oversize", {"spec": spec_with(job_id="x6", labels={"pad": "x" * 200},
                                    server_config={"blob": "y" * 300_000})}, "limit"),
    ("invalid_spec", {"spec": spec_with(job_id="x7", workload="../mine bitcoin")},
     "workload"),
    ("invalid_spec", {"spec": spec_with(job_id="x8", min_clients=5)},
     "min_clients=5 exceeds the 1 clients"),
    ("bad_job_id", {"spec": spec_with(job_id="../etc/passwd")}, "job_id"),
    ("invalid_idempotency_key", {"spec": spec_with(job_id="x9"), "idempotency_key": "a\nb"},
     "idempotency_key"),
    ("invalid_idempotency_key", {"spec": spec_with(job_id="x10"), "idempotency_key": "k" * 300},
     "1-256"),
    ("invalid_spec", {"spec": spec_with(job_id="x11", timeouts={"heartbeat_s": -1})},
     "heartbeat_s"),
    ("too_deep", {"spec": spec_with(job_id="x12", labels=NESTED)}, "the limit is 32"),
    ("too_many_keys", {"spec": spec_with(job_id="x13", server_config=WIDE)},
     "the limit is 10000"),
    ("duplicate_key", {"spec": DUPLICATE}, "'round_s' twice in timeouts"),
    ("invalid_spec", {"spec": NAN}, "timeouts.round_s: not a finite number"),
    ("invalid_spec", {"spec": spec_with(job_id="x15", server={"worker": "srv",
                                                             "data_path": "../secrets"})},
     "server.data_path: must not contain '..' components"),
    ("invalid_spec", {"spec": spec_with(job_id="x16", server={"worker": "srv",
                                                             "data_path": "a\x00b"})},
     "server.data_path: must not contain NUL bytes"),
]

#: The exact reason of each new kind of refusal (limits named, fields named).
EXACT: list[tuple[str, str, str]] = [
    ("too_deep", spec_with(job_id="x12", labels=NESTED),
     "spec nests objects and arrays more than 32 levels deep; the limit is 32"),
    ("too_many_keys", spec_with(job_id="x13", server_config=WIDE),
     "spec has 10019 object keys and array items; the limit is 10000"),
    ("duplicate_key", DUPLICATE,
     "spec has the key 'round_s' twice in timeouts; duplicate keys are not allowed"),
    ("invalid_spec", NAN, "invalid job spec: timeouts.round_s: not a finite number"),
    ("invalid_spec", NAN.replace("NaN", "Infinity"),
     "invalid job spec: timeouts.round_s: not a finite number"),
    ("invalid_spec", spec_with(job_id="x17", server_config={"lr": float("nan")}),
     "invalid job spec: server.config: not a finite number at lr"),
    ("invalid_spec", spec_with(job_id="x15", server={"worker": "srv", "data_path": "../s"}),
     "invalid job spec: server.data_path: must not contain '..' components (got '../s')"),
    ("invalid_spec", spec_with(job_id="x16", server={"worker": "srv", "data_path": "a\x00b"}),
     "invalid job spec: server.data_path: must not contain NUL bytes"),
]


@pytest.mark.parametrize(("kind", "raw", "reason"), EXACT,
                         ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(EXACT)])
def test_limit_refusals_have_exact_reasons(kind: str, raw: str, reason: str) -> None:
    result = parse_submission(Entry("s", "1-0", {"spec": raw}), max_bytes=256 * 1024,
                              namespace="ns")
    assert isinstance(result, Refused)
    assert (result.kind, result.reason) == (kind, reason)


@pytest.mark.parametrize(("kind", "fields", "phrase"), BAD,
                         ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(BAD)])
def test_parse_submission_refuses(kind: str, fields: dict[str, str], phrase: str) -> None:
    result = parse_submission(Entry("s", "1-0", fields), max_bytes=256 * 1024,
                              namespace="ns")
    assert isinstance(result, Refused)
    assert result.kind == kind, result.reason
    assert phrase in result.reason


def test_parse_submission_names_jobs_without_id_from_the_entry() -> None:
    spec = {k: v for k, v in GOOD.items() if k != "job_id"}
    result = parse_submission(Entry("s", "7-1", {"spec": json.dumps(spec),
                                                 "idempotency_key": "key-1"}),
                              max_bytes=1 << 20, namespace="ns")
    assert isinstance(result, Accepted)
    assert result.job_id == submission_job_id("7-1", "ns")
    assert result.spec.idempotency_key == "key-1"


@pytest.fixture
async def mongo_store(mongo_server: ServerProcess) -> AsyncIterator[MongoJobStore]:
    store = connect_mongo(mongo_server.url, unique("db"))
    yield store
    await store.close()


@pytest.mark.fault("20 kinds of bad submission, duplicates, key conflicts",
                   invariants=(4, 5, 8))
async def test_bad_submissions_are_recorded_and_a_good_job_still_completes(
        redis: Redis, keys: Keys, mongo_store: MongoJobStore) -> None:
    bus = Bus(redis, keys)
    workers = workers_for(redis, keys, clients=1)
    async with (daemon_running(mongo_store, redis, fast_options(keys.namespace)) as daemon,
                running(*(w.run for w in workers))):
        # An existing job, then the same id with another spec, then an exact resend.
        await bus.submit(spec_with(job_id="dup", rounds=1))
        await wait_finished(mongo_store, "dup")
        await bus.submit(spec_with(job_id="dup", rounds=2))
        await bus.submit(spec_with(job_id="dup", rounds=1))
        # Idempotency key: a second job id with another spec under the same key.
        await bus.submit(spec_with(job_id="idem-a"), idempotency_key="same-key")
        await bus.submit(spec_with(job_id="idem-b", rounds=3), idempotency_key="same-key")
        for _, fields, _ in BAD:
            await redis.xadd(keys.submissions, fields)  # type: ignore[arg-type]
        await bus.submit(spec_with(job_id="after-all"))
        job = await wait_finished(mongo_store, "after-all")
        await wait_finished(mongo_store, "idem-a")
        stats = daemon.stats
    assert job.status is JobStatus.FINISHED_SUCCESSFULLY
    dup = await mongo_store.get("dup")
    assert dup.spec.rounds == 1, "the first spec stands"
    assert await mongo_store.find_by_id("idem-b") is None, "one job per idempotency key"

    expected = [k for k, _, _ in BAD] + ["duplicate_job", "idempotency_conflict"]
    rejections = await mongo_store.rejections(limit=100)
    assert sorted(r.kind for r in rejections) == sorted(expected)
    assert all(r.reason and r.source == keys.submissions and r.entry_id for r in rejections)
    by_kind = {r.kind: r for r in rejections}
    assert "already exists with a different spec" in by_kind["duplicate_job"].reason
    assert by_kind["duplicate_job"].job_id == "dup"
    assert "same-key" in by_kind["idempotency_conflict"].reason

    letters = await dead_letters(redis, keys)
    assert sorted(d["reason"].split(":")[0] for d in letters) == sorted(expected)
    assert {d["id"] for d in letters} == {r.entry_id for r in rejections}
    assert stats.rejections == len(expected)
    assert stats.submissions_duplicate == 1
    pending = await redis.xpending(keys.submissions, keys.daemon_group)
    assert pending["pending"] == 0


@pytest.mark.parametrize(("kind", "raw", "reason"), EXACT,
                         ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(EXACT)])
def test_the_cli_refuses_locally_with_the_same_reason(
        kind: str, raw: str, reason: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``orchestrator submit`` validates before sending: the same limits, the same words."""
    with pytest.raises(BadInput) as info:
        validate_spec(raw, "spec.json")
    said = capsys.readouterr().err + info.value.message
    expected = reason.removeprefix("invalid job spec: ")
    assert f"spec.json: {expected}" in said, said


def test_the_worker_cli_refuses_a_data_root_that_is_not_a_directory(tmp_path: Path) -> None:
    result = CliRunner().invoke(worker, ["--role", "client", "--name", "w1",
                                         "--data-root", str(tmp_path / "missing")])
    assert result.exit_code == 2
    assert f"data root {tmp_path / 'missing'}: no such directory" in result.output
    assert checked_data_root(str(tmp_path)) == os.path.realpath(tmp_path)
