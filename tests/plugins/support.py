"""Plugins written to a temporary directory: modules, and a distribution's metadata whose
entry points name them (``importlib.metadata`` finds a ``*.dist-info`` on ``sys.path``)."""

from __future__ import annotations

from pathlib import Path

GOOD_MODULE = '''
from pydantic import BaseModel, ConfigDict

from workers.sdk import Workload, WorkloadResult


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: float = 1.0


async def run(ctx):
    """Report one metric and finish."""
    await ctx.report_metrics(1, {"value": float(ctx.config.get("value", 1.0))})
    return WorkloadResult(summary={"done": 1.0})


TYPED = Workload(run, Options, Options, version="7.1")


def not_async(ctx):
    return None
'''

BROKEN_MODULE = "import a_module_that_does_not_exist_anywhere  # noqa: F401\n"


def write_plugin_dir(root: Path, *, prefix: str, entry_points: dict[str, str],
                     version: str = "2.5") -> Path:
    """``root`` with ``{prefix}_good.py``, ``{prefix}_broken.py`` and a distribution
    ``{prefix}-plugins`` whose ``orchestrator.workloads`` entry points are ``entry_points``
    (values may use ``GOOD`` and ``BROKEN`` for the two module names)."""
    root.mkdir(parents=True, exist_ok=True)
    good, broken = f"{prefix}_good", f"{prefix}_broken"
    (root / f"{good}.py").write_text(GOOD_MODULE)
    (root / f"{broken}.py").write_text(BROKEN_MODULE)
    info = root / f"{prefix}_plugins-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {prefix}-plugins\nVersion: {version}\n")
    lines = ["[orchestrator.workloads]"]
    for name, value in entry_points.items():
        lines.append(f"{name} = {value.replace('GOOD', good).replace('BROKEN', broken)}")
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return root
