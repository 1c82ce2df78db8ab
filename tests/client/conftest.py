"""Fixtures of the client tests: a running system (a real daemon and workers, as processes, in
their own namespace and database) and the process environment the in-process client reads its
settings from (``ORCHESTRATOR_*``, ``AWS_*``: the same as the CLI's)."""

from __future__ import annotations

import os

import pytest
from helpers import LIVE_CLIENTS, LIVE_SERVER

SERVER, CLIENTS = LIVE_SERVER, LIVE_CLIENTS


@pytest.fixture
def system(live_env: dict[str, str]) -> dict[str, str]:
    """A daemon, a server worker and two client workers (the session's ``live_env``, shared
    with tests/cli/test_watch_live.py)."""
    return live_env


@pytest.fixture
def client_env(system: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The system's settings in this process's environment (what ``Client()`` reads)."""
    for name in [n for n in os.environ if n.startswith("ORCHESTRATOR_")]:
        monkeypatch.delenv(name)
    for name, value in system.items():
        if name.startswith(("ORCHESTRATOR_", "AWS_")):
            monkeypatch.setenv(name, value)
    return system
