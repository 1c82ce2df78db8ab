"""Workload plugins: the ``orchestrator.workloads`` entry points and ``NAME=module:callable``.

An installed package offers a workload by declaring an entry point in the group
``orchestrator.workloads`` (name -> ``module:attribute``), e.g. in its ``pyproject.toml``::

    [project.entry-points."orchestrator.workloads"]
    linreg = "fedmean.workload:LINREG"

The attribute is either an async callable taking the participant's context (its version is
then the distribution's version) or a :class:`workers.sdk.Workload` (the function, its config
models and its version). ``orchestrator worker --workload NAME=module:callable`` names one on
the worker's own Python path the same way.

Loading runs the plugin's module, so anything can go wrong in it: every failure becomes a
:class:`PluginProblem` naming the plugin and the error, for the registry to log and skip. A
plugin can never take the worker down.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from orchestrator.core import is_name
from workers.sdk import Workload

GROUP = "orchestrator.workloads"
"""The entry-point group workloads are offered in."""

__all__ = ["GROUP", "Found", "PluginError", "PluginProblem", "as_workload", "describe_error",
           "discover", "load_reference", "parse_assignment"]


class PluginError(ValueError):
    """A plugin reference is malformed, or what it names is not a workload."""


@dataclass(frozen=True, slots=True)
class PluginProblem:
    """A plugin that could not be loaded (it is skipped)."""

    name: str
    source: str
    error: str


@dataclass(frozen=True, slots=True)
class Found:
    """A workload loaded from an entry point or a reference, and where it came from."""

    name: str
    workload: Workload
    source: str


def as_workload(obj: object, *, source: str, version: str | None = None) -> Workload:
    """``obj`` as a :class:`Workload`: itself, or an async callable wrapped (with ``version``,
    default ``"1"``); anything else is a :class:`PluginError` saying what it is."""
    if isinstance(obj, Workload):
        return obj
    if inspect.iscoroutinefunction(obj) or inspect.iscoroutinefunction(
            getattr(obj, "__call__", None)):  # noqa: B004 - an async __call__ counts too
        return Workload(obj, version=version or "1")  # type: ignore[arg-type]
    msg = (f"{source} is a {type(obj).__name__}, not an async callable or a "
           "workers.sdk.Workload")
    raise PluginError(msg)


def describe_error(exc: BaseException) -> str:
    """A loading error on one line: ours as said, any other with its type."""
    return str(exc) if isinstance(exc, PluginError) else f"{type(exc).__name__}: {exc}"


def parse_assignment(text: str) -> tuple[str, str]:
    """``NAME=module:callable`` -> (name, reference); a malformed one is a PluginError."""
    name, sep, ref = text.partition("=")
    name, ref = name.strip(), ref.strip()
    module, colon, attr = ref.partition(":")
    if not sep or not colon or not module or not attr:
        raise PluginError(f"{text!r}: expected NAME=module:callable")
    if not is_name(name):
        raise PluginError(f"{text!r}: invalid workload name {name!r}: use letters, digits, "
                          "'_', '.', '-' (<= 128)")
    return name, ref


def load_reference(name: str, ref: str) -> Found:
    """Import ``module:attribute`` and make it a workload; raises what the import raises or
    :class:`PluginError`."""
    obj = EntryPoint(name=name, value=ref, group=GROUP).load()
    return Found(name, as_workload(obj, source=ref), ref)


def discover(points: Iterable[EntryPoint] | None = None
             ) -> tuple[list[Found], list[PluginProblem]]:
    """Load every entry point of the group (or ``points``): the workloads found, in order,
    and the problems of the ones skipped. Entry points of this project (the built-ins) come
    first, so a plugin cannot take a built-in's name; a later claim to a taken name is a
    problem."""
    chosen = list(entry_points(group=GROUP) if points is None else points)
    chosen.sort(key=lambda ep: (not ep.value.startswith("workers.workloads"), ep.name))
    found: list[Found] = []
    problems: list[PluginProblem] = []
    taken: dict[str, str] = {}
    for ep in chosen:
        if ep.name in taken:
            if taken[ep.name] != ep.value:
                problems.append(PluginProblem(ep.name, ep.value, f"the name is taken by "
                                              f"{taken[ep.name]}; ignored"))
            continue
        if not is_name(ep.name):
            problems.append(PluginProblem(ep.name, ep.value, "invalid workload name"))
            continue
        try:
            obj = ep.load()
            version = ep.dist.version if ep.dist is not None else None
            workload = as_workload(obj, source=ep.value, version=version)
        except (Exception, SystemExit) as exc:  # a plugin's import may raise anything
            problems.append(PluginProblem(ep.name, ep.value, describe_error(exc)))
            continue
        taken[ep.name] = ep.value
        found.append(Found(ep.name, workload, ep.value))
    return found, problems
