"""The README's generated parts match the code they are generated from."""

from pathlib import Path

from orchestrator.settings import env_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_configuration_table_lists_every_setting() -> None:
    assert env_table() in README.read_text(), "regenerate with: python -m orchestrator.settings"
