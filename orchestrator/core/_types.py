"""Shared field types for the core models."""

from __future__ import annotations

import re
from datetime import UTC, datetime
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


def evolve(model: M, changes: dict[str, Any]) -> M:
    """``model.model_copy(update=changes)`` without its generic copying (hot path).

    Like ``model_copy``, no validation: every value here was produced by validated models.
    The fields-set is shared with ``model`` when it already names every changed field (models
    are frozen, so nothing adds to it later); it is copied only when it grows.
    """
    new = object.__new__(type(model))
    fields_set = model.__pydantic_fields_set__
    if not fields_set.issuperset(changes):
        fields_set = fields_set | changes.keys()
    _set_dict(new, {**model.__dict__, **changes})
    _set_fields_set(new, fields_set)
    _set_extra(new, None)
    _set_private(new, None)
    return new


def mark_set(model: BaseModel, *names: str) -> None:
    """Add ``names`` to a model's fields-set after an in-place change of a fresh copy
    (never mutating a set that ``evolve`` may share with the original)."""
    fields_set = model.__pydantic_fields_set__
    if not fields_set.issuperset(names):
        object.__setattr__(model, "__pydantic_fields_set__", fields_set.union(names))


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
