"""The layout the rebuild promised: no import circles, no interpreter tricks, small modules."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("orchestrator", "workers")
TRICKS = re.compile(r"\bexec\(|__class__\s*=|object\.__setattr__|tuple\.__new__")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Every project module ``path`` imports, type-checking imports included (``from a.b
    import c`` counts the module a.b.c if there is one, else a.b)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:  # a submodule by name, else the module it is taken from
                sub = f"{node.module}.{alias.name}"
                out.add(sub if sub in modules else node.module)
    return {name for name in out if name in modules}


def test_no_module_imports_a_module_that_imports_it_back() -> None:
    modules = _modules()
    graph = {name: _imports(path, modules) - {name} for name, path in modules.items()}
    cycles = []
    for start in graph:  # a depth-first walk from each module back to itself
        stack, seen = [(start, [start])], set()
        while stack:
            node, trail = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    cycles.append(" -> ".join([*trail, start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*trail, nxt]))
    assert not cycles, "import circles:\n" + "\n".join(sorted(set(cycles))[:20])


def test_only_the_commands_import_the_command_line_package() -> None:
    """The CLI is the outermost layer: the client, the dashboard, the daemon and the workers
    build on library modules (``orchestrator.connect`` for clients), never on ``cli``."""
    modules = _modules()
    def cli(name: str) -> bool:
        return name == "orchestrator.cli" or name.startswith("orchestrator.cli.")

    inward = {name: sorted(filter(cli, _imports(path, modules)))
              for name, path in modules.items() if not cli(name)}
    assert not {name: found for name, found in inward.items() if found}


ENUMS = {"JobStatus", "ParticipantState", "Phase", "Role", "ErrorCode"}


def _enum_rebinding(node: ast.expr) -> bool:
    """An enum class, one of its members, or a tuple of them."""
    if isinstance(node, ast.Tuple):
        return any(_enum_rebinding(e) for e in node.elts)
    if isinstance(node, ast.Attribute):
        node = node.value
    return isinstance(node, ast.Name) and node.id in ENUMS


def test_no_module_level_rebinding_of_enum_members() -> None:
    hits = [f"{path.relative_to(ROOT)}:{node.lineno}"
            for path in _modules().values()
            for node in ast.parse(path.read_text()).body
            if isinstance(node, ast.Assign) and _enum_rebinding(node.value)]
    assert not hits, hits


def test_no_interpreter_tricks() -> None:
    hits = [f"{path.relative_to(ROOT)}:{i}: {line.strip()}"
            for path in _modules().values()
            for i, line in enumerate(path.read_text().splitlines(), 1) if TRICKS.search(line)]
    assert not hits, "\n".join(hits)
