"""The workload registry: names in job specs map to workloads here, never to code in a spec.

A :class:`Workload` is the async function plus what it declares about itself: pydantic models
of its server and client configuration (a participant's config is validated against its
role's model before the workload runs) and a version.

Where workloads come from, on first use: the ``orchestrator.workloads`` entry points of every
installed package (:mod:`workers.plugins`; the built-ins are offered the same way), then the
built-ins of :data:`workers.workloads.BUILTINS` that the package metadata did not name (a
source tree that was never ``pip install``-ed). A plugin that fails to load is logged with its
name and error and skipped. :func:`register_reference` adds one by ``module:callable``
(``orchestrator worker --workload``), :func:`workload` registers a function directly; both
take precedence over an entry point of the same name.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from orchestrator.core import Role, is_name, validation_problems
from orchestrator.errors import UnknownWorkloadError, WorkloadError
from orchestrator.logs import get_logger
from workers.plugins import Found, PluginProblem, describe_error, discover, load_reference
from workers.sdk import Workload, WorkloadFn

log = get_logger("workers.registry")

__all__ = [
    "ConfigError",
    "Workload",
    "WorkloadFn",
    "builtin_specs",
    "get_spec",
    "get_workload",
    "offered_workloads",
    "plugin_problems",
    "register_reference",
    "unregister",
    "validate_config",
    "workload",
    "workload_names",
    "workload_source",
]


class ConfigError(WorkloadError, ValueError):
    """A participant's config does not fit its workload's model; names the fields."""


_REGISTRY: dict[str, Workload] = {}
#: name -> ``module:attribute`` of the workloads loaded by reference (entry points included).
_SOURCES: dict[str, str] = {}
_PROBLEMS: list[PluginProblem] = []


def workload(name: str, *, replace: bool = False, server_config: type[BaseModel] | None = None,
             client_config: type[BaseModel] | None = None, version: str = "1",
             light: bool = False) -> Callable[[WorkloadFn], WorkloadFn]:
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
        _REGISTRY[name] = Workload(fn, server_config, client_config, version, light)
        _SOURCES.pop(name, None)
        return fn

    return register


def register_reference(name: str, ref: str) -> Workload | None:
    """Load ``module:attribute`` and register it under ``name``, replacing any other workload
    of that name; a failure is logged (with the name and the error), recorded in
    :func:`plugin_problems` and returns None: a bad plugin never stops the worker."""
    _load_plugins()
    try:
        found = load_reference(name, ref)
    except (Exception, SystemExit) as exc:  # the module may raise anything at import
        _skip(PluginProblem(name, ref, describe_error(exc)))
        return None
    _add(found, replace=True)
    return found.workload


def workload_source(name: str) -> str | None:
    """``module:attribute`` of a workload loaded from an entry point or ``--workload`` (what a
    separate process can import to run it); None for one registered by :func:`workload`."""
    _load_plugins()
    return _SOURCES.get(name)


def plugin_problems() -> list[PluginProblem]:
    """The plugins skipped so far, with their errors."""
    _load_plugins()
    return list(_PROBLEMS)


def builtin_specs() -> dict[str, Workload]:
    """The built-in workloads only (what ``docs/workloads.md`` documents)."""
    from workers.workloads import BUILTINS  # noqa: PLC0415 - numpy only when first needed

    return dict(sorted(BUILTINS.items()))


def get_spec(name: str) -> Workload:
    """The workload registered under ``name``; ``UnknownWorkloadError`` lists the known ones."""
    _load_plugins()
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
    _load_plugins()
    return sorted(_REGISTRY)


def workload_specs() -> dict[str, Workload]:
    """Every registered workload by name."""
    _load_plugins()
    return dict(sorted(_REGISTRY.items()))


def offered_workloads() -> dict[str, dict[str, Any]]:
    """What a worker advertises in its registration: every workload's version, config
    schemas and, when loaded by reference, its ``source`` (computed once per set of
    registered workloads). The daemon's admission dispatches a job only to workers whose
    advertisement names its workload."""
    specs = workload_specs()
    return _describe(tuple((name, spec, _SOURCES.get(name)) for name, spec in specs.items()))


@functools.lru_cache(maxsize=4)
def _describe(specs: tuple[tuple[str, Workload, str | None], ...]
              ) -> dict[str, dict[str, Any]]:
    return {name: {**spec.describe(), **({"source": source} if source else {})}
            for name, spec, source in specs}


def unregister(name: str) -> None:
    """Forget ``name`` (for tests that register throwaway workloads)."""
    _REGISTRY.pop(name, None)
    _SOURCES.pop(name, None)


def _qualname(fn: WorkloadFn) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def _add(found: Found, *, replace: bool) -> None:
    if replace or found.name not in _REGISTRY:
        _REGISTRY[found.name] = found.workload
        _SOURCES[found.name] = found.source


def _skip(problem: PluginProblem) -> None:
    _PROBLEMS.append(problem)
    log.error("workload plugin skipped", workload=problem.name, source=problem.source,
              error=problem.error)


_loaded = False


def _load_plugins() -> None:
    """Load the entry points, then the built-ins they did not name; once, on first use (the
    plugins' modules, and numpy, are imported only then). A name registered before (by
    :func:`workload` or :func:`register_reference`) keeps its workload. Marked done first, so
    a plugin whose import asks the registry for a workload does not load the plugins again."""
    global _loaded  # noqa: PLW0603 - the registry is process-wide by design
    if _loaded:
        return
    _loaded = True
    from workers.workloads import BUILTIN_SOURCES, BUILTINS  # noqa: PLC0415 - see above

    found, problems = discover()
    for problem in problems:
        _skip(problem)
    for item in found:
        _add(item, replace=False)
    for name, spec in BUILTINS.items():
        if name not in _REGISTRY:
            _add(Found(name, spec, BUILTIN_SOURCES[name]), replace=False)
