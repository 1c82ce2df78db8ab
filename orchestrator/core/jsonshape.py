"""JSON from untrusted producers: its shape checked before a parser goes deep (pure).

Python's ``json`` (like any recursive-descent parser) recurses once per nesting level and
accepts duplicate keys (the last one wins) and ``NaN``/``Infinity``. Entries on the bus come
from anyone with write access, so before a submission or an event is parsed:

* :func:`check_shape` scans the raw text once, with regular expressions (C speed, linear):
  strings are blanked out, then the brackets left are counted. Nesting deeper than
  ``max_depth`` is ``too_deep``; more than ``max_items`` object members plus array elements
  is ``too_many_keys``. For valid JSON the counts are exact; for invalid JSON the scan never
  lets a parser go deeper than it measured (up to the first point where the text stops being
  JSON, both see the same brackets).
* :func:`load_object_pairs` parses with an ``object_pairs_hook`` that refuses duplicate keys
  (``duplicate_key``, with the key and its path); :func:`check_duplicates` only checks, with
  one pass of the C scanner (for an event that pydantic then parses itself).

:func:`check_shape` starts with three ``str.count`` calls: a document with fewer brackets than
``max_depth`` and fewer commas and brackets than ``max_items`` cannot break either limit, so
the common entry costs well under a microsecond.

Non-finite numbers are left to the models (``Timeouts`` and the config validators say
``not a finite number`` with the field), so the CLI's local checks say the same.
"""

from __future__ import annotations

import json
import re
from collections import deque
from typing import Any

_STRING = r'"[^"\\]*(?:\\.[^"\\]*)*"'
_STRINGS = re.compile(_STRING, re.DOTALL)
_EMPTY = re.compile(r"\[\s*\]|\{\s*\}")
_BRACKETS = re.compile(r"[\[\]{}]")


class JsonShapeError(ValueError):
    """JSON refused for its shape: ``kind`` is ``too_deep``, ``too_many_keys`` or
    ``duplicate_key``; the message is the reason."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def check_shape(raw: str, *, what: str, max_depth: int, max_items: int) -> None:
    """Raise :class:`JsonShapeError` if ``raw`` nests deeper than ``max_depth`` or holds more
    than ``max_items`` object members and array elements in all."""
    opened_at_most = raw.count("[") + raw.count("{")  # (brackets in strings count too)
    if opened_at_most <= max_depth and raw.count(",") + opened_at_most <= max_items:
        return  # the common case: too few brackets and commas to break either limit
    bare = _STRINGS.sub("0", raw)  # a string is one scalar: "[]" inside one is not a list
    opened = bare.count("[") + bare.count("{")
    items = bare.count(",") + opened - len(_EMPTY.findall(bare))
    # Depth: walk the brackets, stopping at the limit (and, for a huge flat document, once
    # enough brackets were seen to know the item limit is passed anyway).
    depth = 0
    budget = 2 * (max_items + 1)
    for seen, match in enumerate(_BRACKETS.finditer(bare)):
        if match.group() in "[{":
            depth += 1
            if depth > max_depth:
                raise JsonShapeError("too_deep", f"{what} nests objects and arrays more than "
                                     f"{max_depth} levels deep; the limit is {max_depth}")
        else:
            depth -= 1
        if seen > budget:
            break
    if items > max_items:
        raise JsonShapeError("too_many_keys", f"{what} has {items} object keys and array "
                             f"items; the limit is {max_items}")


#: Marks, inside a parsed object, the first key it had twice (not a str: no JSON key is it).
_DUPLICATE_MARK: Any = object()


def _find_duplicate(value: Any) -> tuple[str, str] | None:
    """(path, key) of the first object holding a duplicate mark, breadth first, iteratively."""
    queue: deque[tuple[str, Any]] = deque([("", value)])
    while queue:
        path, node = queue.popleft()
        if isinstance(node, dict):
            if _DUPLICATE_MARK in node:
                return path, node[_DUPLICATE_MARK]
            queue.extend((f"{path}.{k}" if path else k, v) for k, v in node.items()
                         if k is not _DUPLICATE_MARK)
        elif isinstance(node, list):
            queue.extend((f"{path}[{i}]", v) for i, v in enumerate(node))
    return None


def load_object_pairs(raw: str, *, what: str) -> Any:
    """``json.loads(raw)``, refusing duplicate keys anywhere (:class:`JsonShapeError`
    ``duplicate_key`` naming the key and where it is). Invalid JSON raises ``ValueError``.
    Call :func:`check_shape` first: this parser recurses."""
    duplicates = 0

    def pairs(items: list[tuple[str, Any]]) -> dict[Any, Any]:
        nonlocal duplicates
        obj: dict[Any, Any] = dict(items)
        if len(obj) != len(items):
            duplicates += 1
            seen: set[str] = set()
            for key, _ in items:
                if key in seen:
                    obj[_DUPLICATE_MARK] = key
                    break
                seen.add(key)
        return obj

    value = json.loads(raw, object_pairs_hook=pairs)
    found = _find_duplicate(value) if duplicates else None
    if found is not None:
        path, key = found
        where = f"in {path}" if path else "at the top level"
        raise JsonShapeError("duplicate_key", f"{what} has the key {key!r} twice {where}; "
                             "duplicate keys are not allowed")
    return value


class _Duplicate(Exception):
    pass


def _no_duplicates(items: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(items)
    if len(obj) != len(items):
        raise _Duplicate
    return obj


_STRICT = json.JSONDecoder(object_pairs_hook=_no_duplicates)


def check_duplicates(raw: str, *, what: str) -> None:
    """Refuse duplicate keys in ``raw`` (:class:`JsonShapeError` ``duplicate_key`` naming the
    key and where it is); invalid JSON raises ``ValueError``. Call :func:`check_shape` first.
    One C-scanner pass that stops at the first duplicate; the path is found only then."""
    try:
        _STRICT.decode(raw)
    except _Duplicate:
        load_object_pairs(raw, what=what)  # raises, naming the key and its path
        raise JsonShapeError("duplicate_key", f"{what} has a duplicate key") from None


__all__ = ["JsonShapeError", "check_duplicates", "check_shape", "load_object_pairs"]
