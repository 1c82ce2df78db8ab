"""``docs/workloads.md``, generated from the built-in workloads' configuration models.

``python -m workers.workload_docs --write docs/workloads.md`` rewrites it; a test keeps it in
sync with the models.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from orchestrator.core import Role
from workers.registry import builtin_specs

_HEAD = """# Built-in workloads and their options

Generated from the workloads' configuration models by
`python -m workers.workload_docs --write docs/workloads.md` (a test fails when this page and
the models disagree). A participant's `config` (the server's is `server.config`, each
client's its `config`) is validated by its worker before the workload runs: an unknown option
or a bad value fails the participant at once with `invalid_spec` and the field paths.
"""


def _default(info: Any) -> str:
    if info.is_required():
        return "required"
    value = info.get_default(call_default_factory=True)
    return "—" if value is None else f"`{value!r}`"


def _type(info: Any) -> str:
    """The annotation as written (``|`` escaped for the table)."""
    annotation = info.annotation
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    return f"`{text or str(annotation).replace('typing.', '')}`".replace("|", "\\|")


def _rows(model: type[BaseModel]) -> list[str]:
    if not model.model_fields:
        return ["no options"]
    rows = ["| option | type | default | meaning |", "|---|---|---|---|"]
    for name, info in model.model_fields.items():
        rows.append(f"| `{name}` | {_type(info)} | {_default(info)} | "
                    f"{info.description or ''} |")
    return rows


def page() -> str:
    """The whole page (Markdown)."""
    lines = [_HEAD]
    for name, spec in builtin_specs().items():  # (installed plugins document themselves)
        doc = (spec.fn.__doc__ or "").strip().splitlines()
        lines += [f"## `{name}` (version {spec.version})", "", doc[0] if doc else "", ""]
        server, client = spec.config_model(Role.SERVER), spec.config_model(Role.CLIENT)
        if server is client and server is not None:
            lines += ["Server and clients take the same options:", "", *_rows(server), ""]
            continue
        for role, model in (("Server", server), ("Client", client)):
            lines += [f"{role} options:", ""]
            lines += [*_rows(model), ""] if model is not None else ["any (not checked)", ""]
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--write":
        Path(sys.argv[2]).write_text(page())
        print("written")
    else:
        print(page(), end="")
