"""The workload registry: names in job specs map to workloads here, never to code in a spec.

A :class:`Workload` is the async function plus what it declares about itself: pydantic models
of its server and client configuration (a participant's config is validated against its
role's model before the workload runs) and a version. The built-in workloads
(:data:`workers.workloads.BUILTINS`) are registered on first use; :func:`workload` registers
more.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from orchestrator.core import Role, is_name, validation_problems
from orchestrator.errors import UnknownWorkloadError, WorkloadError
from workers.sdk import Workload, WorkloadFn

__all__ = [
    "ConfigError",
    "Workload",
    "WorkloadFn",
    "get_spec",
    "get_workload",
    "offered_workloads",
    "unregister",
    "validate_config",
    "workload",
    "workload_names",
]


class ConfigError(WorkloadError, ValueError):
    """A participant's config does not fit its workload's model; names the fields."""


_REGISTRY: dict[str, Workload] = {}


def workload(name: str, *, replace: bool = False, server_config: type[BaseModel] | None = None,
             client_config: type[BaseModel] | None = None, version: str = "1"
             ) -> Callable[[WorkloadFn], WorkloadFn]:
    """Register the decorated coroutine function under ``name``, with its config models.

    Registering a second, different function under a taken name raises ``ValueError`` unless
    ``replace`` is true (re-registering the same function, as a module reload does, is fine).
    """
    if not is_name(name):
        msg = f"invalid workload name {name!r}: use letters, digits, '_', '.', '-' (<= 128)"
        raise ValueError(msg)

    def register(fn: WorkloadFn) -> WorkloadFn:
        existing = _REGISTRY.get(name)
        if existing is not None and not replace and _qualname(existing.fn) != _qualname(fn):
            msg = f"workload {name!r} is already registered to {_qualname(existing.fn)}"
            raise ValueError(msg)
        _REGISTRY[name] = Workload(fn, server_config, client_config, version)
        return fn

    return register


def get_spec(name: str) -> Workload:
    """The workload registered under ``name``; ``UnknownWorkloadError`` lists the known ones."""
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(workload_names()) or "(none)"
        msg = f"unknown workload {name!r}; known workloads: {known}"
        raise UnknownWorkloadError(msg) from None


def get_workload(name: str) -> WorkloadFn:
    """The function of the workload registered under ``name``."""
    return get_spec(name).fn


def validate_config(name: str, role: Role, config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` checked against the workload's model for ``role``, defaults filled in (as
    given when the workload declares none); ``ConfigError`` names every bad field."""
    model = get_spec(name).config_model(role)
    if model is None:
        return dict(config)
    try:
        return model.model_validate(dict(config)).model_dump(mode="json", exclude_none=True)
    except ValidationError as exc:
        problems = "; ".join(validation_problems(exc)[:5])
        msg = f"invalid {role.value} config for workload {name!r}: {problems}"
        raise ConfigError(msg) from None


def workload_names() -> list[str]:
    """Every registered workload name, sorted."""
    _load_builtins()
    return sorted(_REGISTRY)


def workload_specs() -> dict[str, Workload]:
    """Every registered workload by name."""
    _load_builtins()
    return dict(sorted(_REGISTRY.items()))


def offered_workloads() -> dict[str, dict[str, Any]]:
    """What a worker advertises in its registration: every workload's version and config
    schemas (computed once per set of registered workloads)."""
    return _describe(tuple(workload_specs().items()))


@functools.lru_cache(maxsize=4)
def _describe(specs: tuple[tuple[str, Workload], ...]) -> dict[str, dict[str, Any]]:
    return {name: spec.describe() for name, spec in specs}


def unregister(name: str) -> None:
    """Forget ``name`` (for tests that register throwaway workloads)."""
    _REGISTRY.pop(name, None)


def _qualname(fn: WorkloadFn) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


@functools.cache
def _load_builtins() -> None:
    """Register the built-ins, once (on first use: they import numpy)."""
    from workers.workloads import BUILTINS  # noqa: PLC0415 - numpy only when first needed

    for name, spec in BUILTINS.items():
        _REGISTRY.setdefault(name, spec)
