"""Shared field types for the core models."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

#: Frozen, strict message config used by every wire model.
FROZEN = ConfigDict(frozen=True, extra="forbid", str_max_length=65_536)


def _as_utc(value: datetime) -> datetime:
    # Mongo (and mongomock) hand back naive datetimes that are UTC.
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]

Name = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")]
"""Identifier-like names: job ids, worker names, participant ids, workload names."""

JsonObject = dict[str, Any]
Metrics = dict[Annotated[str, Field(max_length=128)], float]


M = TypeVar("M", bound=BaseModel)


def evolve(model: M, changes: dict[str, Any]) -> M:
    """``model.model_copy(update=changes)`` without its generic copying (hot path).

    Like ``model_copy``, no validation: every value here was produced by validated models.
    """
    cls = type(model)
    new = cls.__new__(cls)
    values = model.__dict__.copy()
    values.update(changes)
    object.__setattr__(new, "__dict__", values)
    object.__setattr__(
        new, "__pydantic_fields_set__", model.__pydantic_fields_set__ | changes.keys()
    )
    object.__setattr__(new, "__pydantic_extra__", None)
    object.__setattr__(new, "__pydantic_private__", None)
    return new
