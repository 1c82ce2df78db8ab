"""Teach mongomock's bulk builder the ``sort`` keyword that pymongo >= 4.11 passes.

mongomock (the in-process fake used by mongomock-motor) has not caught up with pymongo's
``ReplaceOne``/``UpdateOne(sort=...)``. Dropping an unset ``sort`` is exactly what a real
server does with it; a set one is refused so no test silently relies on unsupported behaviour.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import mongomock.collection as _collection


def _drop_sort(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, sort: Any = None, **kwargs: Any) -> Any:
        if sort is not None:
            raise NotImplementedError("mongomock: bulk operations with sort are unsupported")
        return method(self, *args, **kwargs)

    return wrapper


def install() -> None:
    builder = _collection.BulkOperationBuilder
    if getattr(builder, "_sort_compat", False):
        return
    for name in ("add_replace", "add_update", "add_delete"):
        setattr(builder, name, _drop_sort(getattr(builder, name)))
    builder._sort_compat = True
