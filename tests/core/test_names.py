"""Names: command ids are valid, deterministic names; ``is_name`` agrees with ``Name``."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from orchestrator.core import command_id, is_name
from orchestrator.core._types import Name

NAME = TypeAdapter(Name)


@given(st.text(min_size=1, max_size=128), st.sampled_from(["start", "stop"]),
       st.sampled_from(["server", "client-0", "client-999"]))
def test_command_ids_are_valid_deterministic_names(event_id: str, action: str, pid: str) -> None:
    cid = command_id(event_id, action, pid)
    assert is_name(cid)
    assert NAME.validate_python(cid) == cid
    assert cid == command_id(event_id, action, pid)
    assert cid.endswith(f".{action}.{pid}")
    plain = f"{event_id}.{action}.{pid}"
    if is_name(plain):
        assert cid == plain


def test_command_ids_of_different_events_differ() -> None:
    ids = {command_id(e, "stop", "server") for e in ("a b", "a  b", "a/b", "1-0", "1-1")}
    assert len(ids) == 5


@pytest.mark.parametrize("value", ["job\n", "\njob", "-job", "", "a" * 129, "a/b", "j b"])
def test_is_name_refuses_what_the_name_type_refuses(value: str) -> None:
    """``is_name`` (plain code) and ``Name`` (pydantic) agree, trailing newline included."""
    assert not is_name(value)
    with pytest.raises(ValidationError):
        NAME.validate_python(value)


def test_is_name_accepts_names() -> None:
    for value in ("job-1", "a", "W_2.x", "a" * 128):
        assert is_name(value)
        assert NAME.validate_python(value) == value


@given(st.text(max_size=140))
def test_is_name_agrees_with_the_name_type(value: str) -> None:
    try:
        NAME.validate_python(value)
    except ValidationError:
        assert not is_name(value)
    else:
        assert is_name(value)
