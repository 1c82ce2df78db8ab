"""The core imports no I/O library (style: a pure core, one imperative shell); the CLI
imports no module that makes a logger before logging is configured."""

import ast
import subprocess
import sys
from pathlib import Path

import orchestrator.core

CORE = Path(orchestrator.core.__file__).parent


def loaded_by(module: str, prefixes: tuple[str, ...]) -> list[str]:
    """The modules starting with one of ``prefixes`` that importing ``module`` loads (in a
    fresh interpreter)."""
    code = (
        f"import sys, {module}\n"
        f"print(','.join(m for m in sys.modules if m.startswith({prefixes!r})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [m for m in out.stdout.strip().split(",") if m]


def test_core_loads_no_io_library() -> None:
    io = ("redis", "pymongo", "motor", "aioboto3", "botocore", "anyio", "asyncio")
    assert [m for m in loaded_by("orchestrator.core", io) if m.split(".")[0] in io] == []


def test_core_reads_no_clock_randomness_or_environment() -> None:
    """Time and ids are parameters: no module of the core imports ``time``, ``random``,
    ``uuid``, ``secrets`` or ``os``, or calls ``now``/``utcnow``/``today``."""
    banned_modules = {"time", "random", "uuid", "secrets", "os"}
    banned_calls = {"now", "utcnow", "today"}
    found = []
    for path in sorted(CORE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [(node.module or "").split(".")[0]]
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                names = [f"call:{node.func.attr}"] if node.func.attr in banned_calls else []
            else:
                continue
            found += [f"{path.name}: {n}" for n in names
                      if n in banned_modules or n.startswith("call:")]
    assert found == []


def test_the_cli_loads_no_module_that_makes_a_logger_at_import() -> None:
    """``get_logger`` binds the configuration current at the call; the modules that call it at
    import (bus, daemon, workers) must load only after the CLI has configured logging."""
    early = ("orchestrator.bus", "orchestrator.daemon", "workers")
    assert loaded_by("orchestrator.cli.main", early) == []
