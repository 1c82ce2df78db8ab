"""Shared field types for the core models."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import Enum
from typing import Annotated, Any

from pydantic import AfterValidator, ConfigDict, Field, ValidationError

#: Frozen, strict message config used by every wire model.
FROZEN = ConfigDict(frozen=True, extra="forbid", str_max_length=65_536)


def _as_utc(value: datetime) -> datetime:
    # Mongo (and mongomock) hand back naive datetimes that are UTC.
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]


def parse_utc(value: object) -> datetime | None:
    """A datetime in UTC (a naive one taken as UTC) from a datetime or an ISO 8601 string;
    None for anything else (what a stream note or a worker's registration may carry)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    return _as_utc(value) if isinstance(value, datetime) else None


def jsonable(value: Any) -> Any:
    """``value`` with datetimes as ISO 8601 strings and enums as their values, recursively
    (what the CLI's ``--json`` and the dashboard's JSON print)."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    return value


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")


def is_name(value: str) -> bool:
    """Whether ``value`` is a ``Name`` (the check for code outside pydantic models; whole
    string, so unlike ``re.match(...$)`` a trailing newline does not pass)."""
    return _NAME.fullmatch(value) is not None


Name = Annotated[str, Field(min_length=1, max_length=128, pattern=f"^{_NAME.pattern}$")]
"""Identifier-like names: job ids, worker names, participant ids, workload names."""

JsonObject = dict[str, Any]
Metrics = dict[Annotated[str, Field(max_length=128)], float]


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
