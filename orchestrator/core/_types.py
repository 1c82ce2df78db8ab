"""Shared field types for the core models."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import cache
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

#: Frozen, strict message config used by every wire model.
FROZEN = ConfigDict(frozen=True, extra="forbid", str_max_length=65_536)


def _as_utc(value: datetime) -> datetime:
    # Mongo (and mongomock) hand back naive datetimes that are UTC.
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")


def is_name(value: str) -> bool:
    """Whether ``value`` is a ``Name`` (the check for code outside pydantic models; whole
    string, so unlike ``re.match(...$)`` a trailing newline does not pass)."""
    return _NAME.fullmatch(value) is not None


Name = Annotated[str, Field(min_length=1, max_length=128, pattern=f"^{_NAME.pattern}$")]
"""Identifier-like names: job ids, worker names, participant ids, workload names."""

JsonObject = dict[str, Any]
Metrics = dict[Annotated[str, Field(max_length=128)], float]


M = TypeVar("M", bound=BaseModel)


# The slots every pydantic model instance has, set directly (``object.__setattr__`` would
# look each name up on the class first): ``evolve`` runs twice per event on the hot path.
_set_dict = BaseModel.__dict__["__dict__"].__set__
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__


#: Builds a NamedTuple without calling its generated ``__new__`` (what ``Cls._make`` does),
#: for the NamedTuples made once per event on the daemon's hot path (``bench/bench_core.py``
#: prints both costs).
fast_tuple = tuple.__new__


@cache
def _every_field(cls: type[BaseModel]) -> set[str]:
    return set(cls.model_fields)


def evolve(model: M, changes: dict[str, Any]) -> M:
    """``model.model_copy(update=changes)`` without its generic copying (hot path).

    Like ``model_copy``, no validation: every value here was produced by validated models.
    The copy counts *every* field as set (one shared set per class, never mutated: the
    models are frozen): an ``exclude_unset`` dump of it includes defaults, never omits a
    change, and nothing per copy is built or looked at to say so.
    """
    cls = type(model)
    new = object.__new__(cls)
    _set_dict(new, {**model.__dict__, **changes})
    _set_fields_set(new, _every_field(cls))
    _set_extra(new, None)
    _set_private(new, None)
    return new


def validation_problems(exc: ValidationError) -> list[str]:
    """``field.path[0].name: message`` for every error of a validation, in order (the CLI's
    local checks and the daemon's rejection reasons say the same thing the same way)."""
    problems = []
    for err in exc.errors(include_url=False):
        path = ""
        for part in err["loc"]:
            if part == "function-after":  # pydantic's name for an after-validator step
                continue
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        problems.append(f"{path or '(spec)'}: {err['msg']}")
    return problems
