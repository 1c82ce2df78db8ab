"""docs/state-machine.md is generated from the two tables and says what they say."""

from __future__ import annotations

from pathlib import Path

from orchestrator.core import JOINT, RULES
from orchestrator.core.diagram import tables

DOC = Path(__file__).resolve().parents[2] / "docs" / "state-machine.md"


def test_the_page_is_generated_from_the_tables() -> None:
    assert DOC.read_text() == tables(), (
        "docs/state-machine.md is stale: python -m orchestrator.core.diagram "
        "--tables docs/state-machine.md")


def test_the_page_names_every_rule() -> None:
    text = tables()
    assert text.count("\n| ") - 2 == len(RULES) + len(JOINT)  # (minus the two header rows)
    assert all(rule.name in text for rule in JOINT)
