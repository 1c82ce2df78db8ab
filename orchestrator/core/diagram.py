"""Documents generated from the state machine's tables, kept in sync by tests.

``python -m orchestrator.core.diagram`` prints the README's state diagram;
``--write README.md`` rewrites the block between ``<!-- state-diagram:start -->`` and
``<!-- state-diagram:end -->``; ``--tables docs/state-machine.md`` rewrites the page that
lists both tables.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from orchestrator.core.events import EVENT_TYPES
from orchestrator.core.machine import JOINT, RULES
from orchestrator.core.status import TERMINAL, JobStatus

START, END = "<!-- state-diagram:start -->", "<!-- state-diagram:end -->"

_PAGE_HEAD = """# The job state machine

Generated from `orchestrator/core/machine.py` (`RULES`) and `orchestrator/core/joint.py`
(`JOINT`) by
`python -m orchestrator.core.diagram --tables docs/state-machine.md` (a test fails when this
page and the tables disagree). Read the module's docstring for the theory of operation.

`decide(job, events, now)` takes the events of one daemon batch for one job and applies them
in order. For each event, the **event table** names what it does given the job's status.
After any event that changed a participant's state, the phase or the round of an
IN_PROGRESS job, the **joint-state table** is read top to bottom and its first rule that
holds says what the participants' states mean for the job.
"""


def edges() -> list[tuple[JobStatus, JobStatus, str]]:
    """Distinct (from, to, event type) edges that change the status, for the diagram."""
    out = {(status, target, event_type) for (status, event_type), rule in RULES.items()
           for target in rule.targets if target is not status}
    order = {s: i for i, s in enumerate(JobStatus)}
    return sorted(out, key=lambda e: (order[e[0]], order[e[1]], e[2]))


def mermaid() -> str:
    """The state diagram generated from the event table (the README embeds it)."""
    lines = ["stateDiagram-v2", "    [*] --> NOT_STARTED: submitted"]
    grouped: dict[tuple[JobStatus, JobStatus], list[str]] = {}
    for src, dst, event_type in edges():
        grouped.setdefault((src, dst), []).append(event_type)
    for (src, dst), types in grouped.items():
        lines.append(f"    {src.value} --> {dst.value}: {', '.join(types)}")
    lines.extend(f"    {s.value} --> [*]" for s in JobStatus if s in TERMINAL)
    return "\n".join(lines)


def block() -> str:
    return f"{START}\n```mermaid\n{mermaid()}\n```\n{END}"


def tables() -> str:
    """The page listing both tables (Markdown)."""
    lines = [_PAGE_HEAD, "## The event table", "",
             "| status | event | handler | what happens | may lead to |", "|---|---|---|---|---|"]
    for status in JobStatus:
        for event_type in EVENT_TYPES:
            rule = RULES[(status, event_type)]
            targets = ", ".join(s.value for s in JobStatus if s in rule.targets)
            name = getattr(rule.handler, "__name__", "handler").lstrip("_")
            lines.append(f"| {status.value} | `{event_type}` | `{name}` | {rule.summary} "
                         f"| {targets} |")
    lines += ["", "## The joint-state table (first match wins)", "",
              "| # | rule | then |", "|---|---|---|"]
    for i, joint in enumerate(JOINT, 1):
        if joint.ends is not None:
            then = f"the job ends {joint.ends.value}"
        elif joint.phase is not None:
            then = f"phase `{joint.phase.value}`"
        else:
            then = "nothing changes (wait)"
        lines.append(f"| {i} | {joint.name} | {then} |")
    return "\n".join(lines) + "\n"


def write(path: Path) -> bool:
    text = path.read_text()
    new = re.sub(re.escape(START) + r".*?" + re.escape(END), lambda _m: block(), text, flags=re.S)
    if new == text:
        return False
    path.write_text(new)
    return True


def write_tables(path: Path) -> bool:
    new = tables()
    if path.exists() and path.read_text() == new:
        return False
    path.write_text(new)
    return True


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--write":
        print("updated" if write(Path(sys.argv[2])) else "unchanged")
    elif len(sys.argv) == 3 and sys.argv[1] == "--tables":
        print("updated" if write_tables(Path(sys.argv[2])) else "unchanged")
    else:
        print(block())
