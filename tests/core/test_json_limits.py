"""Untrusted JSON: depth and key count checked before parsing, duplicate keys refused, NaN and
infinities named by field; a worker of the wrong role fails the job at once (pure parts)."""

from __future__ import annotations

import json
import sys

import pytest
from pydantic import ValidationError

from orchestrator.core import (
    ErrorCode,
    JobSpec,
    JobStatus,
    JobUnschedulable,
    validation_problems,
)
from orchestrator.core.jsonshape import (
    JsonShapeError,
    check_duplicates,
    check_shape,
    load_object_pairs,
)
from orchestrator.core.spec import MAX_JSON_DEPTH, MAX_JSON_ITEMS, load_spec_json
from tests.core.scenarios import T0, decide_one, new_job


def nested(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


def shape_error(raw: str) -> JsonShapeError:
    with pytest.raises(JsonShapeError) as info:
        check_shape(raw, what="spec", max_depth=MAX_JSON_DEPTH, max_items=MAX_JSON_ITEMS)
    return info.value


def test_depth_at_the_limit_passes_one_more_is_too_deep() -> None:
    check_shape(nested(32), what="spec", max_depth=32, max_items=100)
    check_shape('{"a":' * 31 + "[1]" + "}" * 31, what="spec", max_depth=32, max_items=100)
    error = shape_error(nested(33))
    assert error.kind == "too_deep"
    assert error.reason == "spec nests objects and arrays more than 32 levels deep; the limit is 32"


def test_depth_is_refused_before_the_parser_could_recurse() -> None:
    """Far deeper than Python's recursion limit: refused by the scan (no RecursionError)."""
    raw = nested(sys.getrecursionlimit() * 50)
    assert shape_error(raw).kind == "too_deep"
    assert shape_error('{"a": ' * 100_000).kind == "too_deep"  # unterminated, still refused


def test_brackets_inside_strings_do_not_count() -> None:
    raw = json.dumps({"a": "[" * 1000, "b": ["{" * 50, "]]]]"], "c\\\"[": "x"})
    check_shape(raw, what="spec", max_depth=2, max_items=5)  # 3 keys, 2 items
    with pytest.raises(JsonShapeError, match="has 5 object keys"):
        check_shape(raw, what="spec", max_depth=2, max_items=4)
    with pytest.raises(JsonShapeError, match="more than 1 levels"):
        check_shape(raw, what="spec", max_depth=1, max_items=5)


def test_keys_and_items_are_counted_exactly() -> None:
    check_shape("[" + ",".join(["[]"] * 10_000) + "]", what="spec", max_depth=32,
                max_items=10_000)
    error = shape_error("[" + ",".join(["1"] * 10_001) + "]")
    assert error.kind == "too_many_keys"
    assert error.reason == "spec has 10001 object keys and array items; the limit is 10000"
    keys = json.dumps({f"k{i}": i for i in range(10_001)})
    assert shape_error(keys).reason.startswith("spec has 10001 object keys")
    assert shape_error(json.dumps({"a": [{}] * 5000, "b": [{"x": 1}] * 5000})).kind == \
        "too_many_keys"


@pytest.mark.parametrize(("raw", "reason"), [
    ('{"a": 1, "a": 2}', "spec has the key 'a' twice at the top level"),
    ('{"timeouts": {"round_s": 1, "round_s": 2}}', "spec has the key 'round_s' twice in timeouts"),
    ('{"clients": [{"worker": "a"}, {"worker": "b", "worker": "c"}]}',
     "spec has the key 'worker' twice in clients[1]"),
    ('{"a": 1, "\\u0061": 2}', "spec has the key 'a' twice at the top level"),
])
def test_duplicate_keys_are_refused_with_key_and_path(raw: str, reason: str) -> None:
    with pytest.raises(JsonShapeError) as info:
        load_object_pairs(raw, what="spec")
    assert info.value.kind == "duplicate_key"
    assert info.value.reason == reason + "; duplicate keys are not allowed"
    with pytest.raises(JsonShapeError):
        check_duplicates(raw, what="spec")


def test_the_same_key_in_different_objects_is_fine() -> None:
    raw = '{"clients": [{"worker": "a"}, {"worker": "b"}], "server": {"worker": "s"}}'
    assert load_object_pairs(raw, what="spec")["clients"][1] == {"worker": "b"}
    check_duplicates(raw, what="event")


@pytest.mark.parametrize(("timeouts", "problem"), [
    ('{"round_s": NaN}', "timeouts.round_s: not a finite number"),
    ('{"start_s": Infinity}', "timeouts.start_s: not a finite number"),
    ('{"job_s": -Infinity}', "timeouts.job_s: not a finite number"),
    ('{"heartbeat_s": "nan"}', "timeouts.heartbeat_s: not a finite number"),
    ('{"round_s": 1e400}', "timeouts.round_s: not a finite number"),
    ('{"round_s": 700000}', "timeouts.round_s: Input should be less than or equal to 604800"),
])
def test_non_finite_timeouts_say_so_with_the_field(timeouts: str, problem: str) -> None:
    raw = '{"workload": "noop", "server": {"worker": "s"}, "timeouts": ' + timeouts + "}"
    with pytest.raises(ValidationError) as info:
        JobSpec.model_validate(load_spec_json(raw))
    assert validation_problems(info.value) == [problem]


def test_non_finite_config_values_are_named_by_their_path() -> None:
    raw = ('{"workload": "noop", "server": {"worker": "s"}, "server_config": {"lr": NaN},'
           ' "clients": [{"worker": "c", "config": {"a": [1, {"b": Infinity}]}}]}')
    with pytest.raises(ValidationError) as info:
        JobSpec.from_json(raw)
    assert validation_problems(info.value) == [
        "server.config: not a finite number at lr",  # (server_config is moved there)
        "clients[0].config: not a finite number at a[1].b",
    ]


@pytest.mark.parametrize(("path", "problem"), [
    ("../etc/passwd", "server.data_path: must not contain '..' components (got '../etc/passwd')"),
    ("a/../../b", "server.data_path: must not contain '..' components (got 'a/../../b')"),
    ("a\\..\\b", "server.data_path: must not contain '..' components (got 'a\\\\..\\\\b')"),
    ("a\x00b", "server.data_path: must not contain NUL bytes"),
])
def test_data_path_with_dotdot_or_nul_is_refused(path: str, problem: str) -> None:
    with pytest.raises(ValidationError) as info:
        JobSpec.model_validate({"workload": "noop", "server": {"worker": "s", "data_path": path}})
    assert validation_problems(info.value) == [problem]
    ok = JobSpec.model_validate({"workload": "noop",
                                 "server": {"worker": "s", "data_path": "shards/a..b/x.npz"}})
    assert ok.server.data_path == "shards/a..b/x.npz"


def test_from_json_applies_the_shape_limits() -> None:
    with pytest.raises(JsonShapeError, match="the limit is 32"):
        JobSpec.from_json('{"workload": "noop", "labels": ' + nested(40) + "}")
    with pytest.raises(JsonShapeError, match="twice"):
        JobSpec.from_json('{"workload": "noop", "workload": "fail", "server": {"worker": "s"}}')


def test_an_unschedulable_job_fails_at_once_with_cannot_schedule() -> None:
    job = new_job()
    event = JobUnschedulable(event_id="u", job_id=job.id, participant="server", worker="srv",
                             message="worker srv is registered as a client worker and cannot "
                                     "run server, whose role is server")
    d = decide_one(job, event, T0)
    assert d.job.status is JobStatus.FINISHED_WITH_ERROR
    assert d.job.error is not None and d.job.error.code is ErrorCode.CANNOT_SCHEDULE
    assert d.job.error.participant == "server" and d.job.error.message == event.message
    assert [h.reason for h in d.history] == ["cannot schedule"]
    assert not d.commands and d.job.deadline_at is None
    again = decide_one(d.job, event, T0)
    assert again.job is d.job and not again.changed
