"""Shared field types for the core models."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, ConfigDict, Field, ValidationError

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


R = TypeVar("R")


#: Builds a NamedTuple without calling its generated ``__new__`` (what ``Cls._make`` does),
#: for the NamedTuples made once per event on the daemon's hot path (``bench/bench_core.py``
#: prints both costs).
fast_tuple = tuple.__new__

# --- frozen records ------------------------------------------------------------------------
#
# ``Job`` and ``Participant`` are frozen, slotted dataclasses (validated by pydantic where
# they enter: documents, see ``orchestrator.core.job``). Their fields are read many times per
# event on the daemon's hot path: a slot read is one specialised instruction (4 ns), a
# pydantic model's field read goes through ``BaseModel.__getattr__``'s slot hook (43 ns), and
# a slot object keeps its values in one block instead of behind a dict (fewer cache misses
# over thousands of jobs). ``bench/bench_core.py`` prints the costs.
#
# A frozen dataclass's ``__init__`` and ``dataclasses.replace`` set each field through
# ``object.__setattr__`` (several times ``evolve``'s cost: ``bench_core.py`` prints both).
# ``evolve`` copies into a *writable twin* of the class: a subclass that adds no slots (so
# the layout is the same), stores fields with plain attribute writes, and is then turned
# into the frozen class by ``__class__`` assignment, which CPython allows between classes of
# the same layout.

_set = object.__setattr__
_WRITABLE: dict[type, type] = {}


def _writable(cls: type) -> type:
    """Make (once per class; ``evolve`` keeps them in ``_WRITABLE``) the writable twin."""
    names = [f.name for f in dataclasses.fields(cls)]
    if not all(name.isidentifier() for name in names):  # (they are: dataclass fields)
        raise TypeError(f"{cls.__name__}: not a dataclass of plain field names")
    source = "def __init__(self, other):\n" + "".join(
        f"    self.{name} = other.{name}\n" for name in names)
    namespace: dict[str, Any] = {}
    exec(source, namespace)  # field names of our own dataclasses only (checked above)
    twin = _WRITABLE[cls] = type(f"_Writable{cls.__name__}", (cls,), {
        "__slots__": (),
        # Both: a frozen dataclass defines both, and they share one type slot.
        "__setattr__": object.__setattr__,
        "__delattr__": object.__delattr__,
        "__init__": namespace["__init__"],
        "__module__": cls.__module__,
    })
    return twin


def evolve(record: R, changes: dict[str, Any]) -> R:
    """``dataclasses.replace(record, **changes)`` for a frozen, slotted dataclass, without
    its per-field ``object.__setattr__`` (hot path: twice per event in ``decide``).

    No validation, as with ``replace``: every value here comes from validated data. An
    unknown field name raises ``AttributeError``.
    """
    cls = type(record)
    new: R = (_WRITABLE.get(cls) or _writable(cls))(record)
    for name, value in changes.items():
        setattr(new, name, value)
    _set(new, "__class__", cls)
    return new


#: Sets a field of a frozen record that was *just made* by ``evolve`` and that nothing else
#: holds yet (``decide`` and the store stamp their own fresh copies this way, rather than
#: copying them once more). ``object.__setattr__`` itself: no wrapper call on the hot path.
set_in_place: Callable[[object, str, Any], None] = object.__setattr__


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
