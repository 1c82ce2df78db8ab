"""The workload registry: names in job specs map to functions here, never to code in a spec.

The built-in workloads (:data:`workers.workloads.BUILTINS`) are registered on first use of
:func:`get_workload` or :func:`workload_names`; :func:`workload` registers more.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from orchestrator.core import is_name
from orchestrator.errors import UnknownWorkloadError
from workers.sdk import WorkloadFn

__all__ = ["WorkloadFn", "get_workload", "unregister", "workload", "workload_names"]

_REGISTRY: dict[str, WorkloadFn] = {}


def workload(name: str, *, replace: bool = False) -> Callable[[WorkloadFn], WorkloadFn]:
    """Register the decorated coroutine function under ``name``.

    Registering a second, different function under a taken name raises ``ValueError`` unless
    ``replace`` is true (re-registering the same function, as a module reload does, is fine).
    """
    if not is_name(name):
        msg = f"invalid workload name {name!r}: use letters, digits, '_', '.', '-' (<= 128)"
        raise ValueError(msg)

    def register(fn: WorkloadFn) -> WorkloadFn:
        existing = _REGISTRY.get(name)
        if existing is not None and not replace and _qualname(existing) != _qualname(fn):
            msg = f"workload {name!r} is already registered to {_qualname(existing)}"
            raise ValueError(msg)
        _REGISTRY[name] = fn
        return fn

    return register


def get_workload(name: str) -> WorkloadFn:
    """The workload registered under ``name``; ``UnknownWorkloadError`` lists the known ones."""
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(workload_names()) or "(none)"
        msg = f"unknown workload {name!r}; known workloads: {known}"
        raise UnknownWorkloadError(msg) from None


def workload_names() -> list[str]:
    """Every registered workload name, sorted."""
    _load_builtins()
    return sorted(_REGISTRY)


def unregister(name: str) -> None:
    """Forget ``name`` (for tests that register throwaway workloads)."""
    _REGISTRY.pop(name, None)


def _qualname(fn: WorkloadFn) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


@functools.cache
def _load_builtins() -> None:
    """Register the built-ins, once (on first use: they import numpy)."""
    from workers.workloads import BUILTINS  # noqa: PLC0415 - numpy only when first needed

    for name, fn in BUILTINS.items():
        _REGISTRY.setdefault(name, fn)
