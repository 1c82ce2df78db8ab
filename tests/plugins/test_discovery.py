"""Workloads from entry points and ``NAME=module:callable``: found, typed, versioned; a plugin
that fails to load is skipped with its name and error, never fatal."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from importlib.metadata import distributions, entry_points
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import unique

from orchestrator.cli.worker import worker
from orchestrator.core import Role
from tests.plugins.support import write_plugin_dir
from workers import registry
from workers.plugins import GROUP, PluginError, discover, parse_assignment
from workers.sdk import Workload
from workers.workloads import BUILTINS


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, str]]:
    """A plugin directory on ``sys.path`` (its modules are forgotten afterwards)."""
    prefix = unique("plug").replace("-", "_")
    root = write_plugin_dir(tmp_path / "plugins", prefix=prefix, entry_points={
        "good": "GOOD:run", "typed": "GOOD:TYPED", "kaput": "BROKEN:run",
        "notasync": "GOOD:not_async", "missing": "GOOD:nothing_here",
        "fedavg": "GOOD:run"})
    monkeypatch.syspath_prepend(str(root))
    yield root, prefix
    for name in [m for m in sys.modules if m.startswith(prefix)]:
        del sys.modules[name]


def test_entry_points_are_loaded_and_broken_ones_skipped_with_their_error(
        plugin_dir: tuple[Path, str]) -> None:
    root, prefix = plugin_dir
    (dist,) = [d for d in distributions(path=[str(root)])]
    ours = [ep for ep in dist.entry_points if ep.group == GROUP]
    builtins = [ep for ep in entry_points(group=GROUP) if ep.name in BUILTINS]
    found, problems = discover([*ours, *builtins])
    by_name = {f.name: f for f in found}
    assert {ep.name for ep in builtins} <= set(by_name)
    assert by_name["fedavg"].workload is BUILTINS["fedavg"], "a built-in keeps its name"
    # A plain async function: its version is the distribution's.
    assert by_name["good"].workload.version == "2.5"
    assert by_name["good"].source == f"{prefix}_good:run"
    # A Workload object: its own models and version.
    typed = by_name["typed"].workload
    assert typed.version == "7.1"
    assert typed.config_model(Role.CLIENT) is not None
    reasons = {p.name: p.error for p in problems}
    assert set(reasons) == {"kaput", "notasync", "missing", "fedavg"}
    assert reasons["kaput"].startswith("ModuleNotFoundError: No module named "
                                       "'a_module_that_does_not_exist_anywhere'")
    assert reasons["notasync"] == (f"{prefix}_good:not_async is a function, not an async "
                                   "callable or a workers.sdk.Workload")
    assert reasons["missing"].startswith("AttributeError")
    assert reasons["fedavg"] == "the name is taken by workers.workloads:FEDAVG; ignored"


def test_the_built_ins_are_entry_points_of_this_project() -> None:
    names = {ep.name: ep.value for ep in entry_points(group=GROUP)}
    if not set(BUILTINS) <= set(names):
        pytest.skip("package metadata predates the entry points: pip install -e . again")
    assert {n: names[n] for n in BUILTINS} == {
        n: f"workers.workloads:{n.upper()}" for n in BUILTINS}
    assert {"noop", "sleep", "fail", "fedavg"} <= set(BUILTINS)
    assert registry.workload_source("fedavg") == "workers.workloads:FEDAVG"
    assert registry.get_spec("fedavg") is BUILTINS["fedavg"]


def test_a_reference_registers_a_workload_and_a_broken_one_is_skipped(
        plugin_dir: tuple[Path, str]) -> None:
    _, prefix = plugin_dir
    name, broken = unique("mine"), unique("broken")
    try:
        added = registry.register_reference(name, f"{prefix}_good:TYPED")
        assert isinstance(added, Workload)
        assert registry.get_spec(name) is added
        offered = registry.offered_workloads()[name]
        assert offered["version"] == "7.1"
        assert offered["source"] == f"{prefix}_good:TYPED"
        assert "value" in offered["client_config"]["properties"]
        with pytest.raises(registry.ConfigError, match="value"):
            registry.validate_config(name, Role.CLIENT, {"value": "lots"})
        assert registry.register_reference(broken, f"{prefix}_broken:run") is None
        assert broken not in registry.workload_names()
        problem = registry.plugin_problems()[-1]
        assert (problem.name, problem.source) == (broken, f"{prefix}_broken:run")
        assert "a_module_that_does_not_exist_anywhere" in problem.error
    finally:
        registry.unregister(name)


@pytest.mark.parametrize(("text", "problem"), [
    ("mine", "expected NAME=module:callable"),
    ("mine=module", "expected NAME=module:callable"),
    ("=module:fn", "invalid workload name ''"),
    ("bad name=module:fn", "invalid workload name 'bad name'"),
])
def test_malformed_assignments_are_refused(text: str, problem: str) -> None:
    with pytest.raises(PluginError, match=problem):
        parse_assignment(text)


def test_the_worker_cli_refuses_a_malformed_workload_option() -> None:
    result = CliRunner().invoke(worker, ["--role", "client", "--name", "w1",
                                         "--workload", "nonsense"])
    assert result.exit_code == 2
    assert "--workload 'nonsense': expected NAME=module:callable" in result.output
