"""Which error a failed anyio task group surfaces to the caller of a storage operation."""

from __future__ import annotations

import anyio


def leaf_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error to surface from a task group's exception group: the first non-cancellation."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    cancelled = anyio.get_cancelled_exc_class()
    for leaf in leaves:
        if not isinstance(leaf, cancelled):
            return leaf
    return leaves[0] if leaves else group
