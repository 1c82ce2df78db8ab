"""Shared field types for the core models."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, ConfigDict, Field

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
