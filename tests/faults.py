"""The fault suite's table: one line per fault scenario and the invariants checked after it.

Fault tests are marked ``@pytest.mark.fault("scenario", invariants=(1, 3, …))`` with the
numbers of design.md's invariants their assertions check. ``python bench/faults.py`` (or
``python -m pytest -m fault --fault-table``) runs them and prints the table at the end: one
line per scenario (its result, its time, the invariants checked), a count of the results and,
for each invariant, how many scenarios check it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

INVARIANTS = {
    1: "every job reaches FINISHED by its deadlines",
    2: "a FINISHED state never changes",
    3: "an event affects a job at most once",
    4: "one job per job id and idempotency key",
    5: "every entry acknowledged or dead-lettered with its reason",
    6: "every manifest checkpoint exists with its sha256",
    7: "SIGKILL loses nothing and duplicates nothing",
    8: "bad input: a clear recorded error, the good entries unharmed",
}


@dataclass
class FaultTable:
    rows: list[tuple[str, str, tuple[int, ...], float]] = field(default_factory=list)

    def add(self, item: pytest.Item, report: pytest.TestReport) -> None:
        marker = item.get_closest_marker("fault")
        if marker is None or (report.when != "call" and not (report.when == "setup"
                                                            and report.outcome != "passed")):
            return
        scenario = marker.args[0] if marker.args else item.name
        invariants = tuple(marker.kwargs.get("invariants", ()))
        self.rows.append((scenario, report.outcome, invariants, report.duration))

    def lines(self) -> list[str]:
        width = max((len(r[0]) for r in self.rows), default=10)
        out = [f"{'scenario':<{width}}  result   time    invariants checked"]
        for scenario, outcome, invariants, duration in self.rows:
            checked = ", ".join(str(i) for i in invariants) or "-"
            out.append(f"{scenario:<{width}}  {outcome:<7}  {duration:5.1f}s  {checked}")
        outcomes = [r[1] for r in self.rows]
        summary = ", ".join(f"{outcomes.count(o)} {o}" for o in sorted(set(outcomes)))
        out.append(f"{len(self.rows)} scenarios: {summary}")
        seen = sorted({i for _, _, inv, _ in self.rows for i in inv})
        out.append("")
        for i in seen:
            by = sum(1 for _, _, inv, _ in self.rows if i in inv)
            out.append(f"  {i}. {INVARIANTS[i]} ({by} scenario{'s' if by > 1 else ''})")
        missing = sorted(set(INVARIANTS) - set(seen))
        if missing:
            out.append(f"  not checked by any scenario run: {missing}")
        return out
