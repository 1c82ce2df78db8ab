"""Fixtures of the client tests: a running system (a real daemon and workers, as processes, in
their own namespace and database) and the process environment the in-process client reads its
settings from (``ORCHESTRATOR_*``, ``AWS_*``: the same as the CLI's)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from helpers import live_system

SERVER, CLIENTS = "cl-server", ["cl-client-1", "cl-client-2"]


@pytest.fixture(scope="module")
def system(stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[dict[str, str]]:
    """A daemon, a server worker and two client workers; stopped by pid afterwards."""
    with live_system(stack_env, tmp_path_factory.mktemp("client"), "client", SERVER,
                     CLIENTS) as env:
        yield env


@pytest.fixture
def client_env(system: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The system's settings in this process's environment (what ``Client()`` reads)."""
    for name in [n for n in os.environ if n.startswith("ORCHESTRATOR_")]:
        monkeypatch.delenv(name)
    for name, value in system.items():
        if name.startswith(("ORCHESTRATOR_", "AWS_")):
            monkeypatch.setenv(name, value)
    return system
