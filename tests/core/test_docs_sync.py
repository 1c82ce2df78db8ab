"""The README's generated parts match the code they are generated from."""

from pathlib import Path

from orchestrator.core import diagram
from orchestrator.settings import env_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_configuration_table_lists_every_setting() -> None:
    assert env_table() in README.read_text(), "regenerate with: python -m orchestrator.settings"


def test_the_diagram_writer_changes_only_its_block(tmp_path: Path) -> None:
    copy = tmp_path / "README.md"
    text = README.read_text()
    copy.write_text(text)
    assert not diagram.write(copy), "README's diagram is stale: run the diagram --write"
    stale = text.replace(diagram.block(), f"{diagram.START}\nold\n{diagram.END}")
    assert stale != text
    copy.write_text(stale)
    assert diagram.write(copy)
    assert copy.read_text() == text
