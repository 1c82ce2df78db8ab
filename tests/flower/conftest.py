"""The flower tests' shared setup: the example app (and this repository, for the test apps in
``tests.flower.apps``) importable here and in every process the tests start."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_DIR = REPO / "examples" / "flower-app"


@pytest.fixture(autouse=True)
def flower_apps_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLE_DIR))
    parts = [str(REPO), str(EXAMPLE_DIR), *filter(None, [os.environ.get("PYTHONPATH")])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(parts))
