"""The core imports no I/O library (style: a pure core, one imperative shell); the CLI
imports no module that makes a logger before logging is configured."""

import subprocess
import sys


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


def test_the_cli_loads_no_module_that_makes_a_logger_at_import() -> None:
    """``get_logger`` binds the configuration current at the call; the modules that call it at
    import (bus, daemon, workers) must load only after the CLI has configured logging."""
    early = ("orchestrator.bus", "orchestrator.daemon", "workers")
    assert loaded_by("orchestrator.cli.main", early) == []
