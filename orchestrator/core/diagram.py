"""Keep the README's state diagram in sync with the transitions table.

``python -m orchestrator.core.diagram`` prints it; ``--write README.md`` rewrites the block
between ``<!-- state-diagram:start -->`` and ``<!-- state-diagram:end -->``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from orchestrator.core.transitions import mermaid

START, END = "<!-- state-diagram:start -->", "<!-- state-diagram:end -->"


def block() -> str:
    return f"{START}\n```mermaid\n{mermaid()}\n```\n{END}"


def write(path: Path) -> bool:
    text = path.read_text()
    new = re.sub(re.escape(START) + r".*?" + re.escape(END), lambda _m: block(), text, flags=re.S)
    if new == text:
        return False
    path.write_text(new)
    return True


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--write":
        print("updated" if write(Path(sys.argv[2])) else "unchanged")
    else:
        print(block())
