"""Fixtures of the client tests: a running system (a real daemon and workers, as processes, in
their own namespace and database) and the process environment the in-process client reads its
settings from (``ORCHESTRATOR_*``, ``AWS_*``: the same as the CLI's)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
from helpers import subprocess_env, unique
from redis import Redis as SyncRedis

from orchestrator.bus.keys import Keys
from orchestrator.demo import Supervisor
from orchestrator.devstack.servers import pid_alive

SERVER, CLIENTS = "cl-server", ["cl-client-1", "cl-client-2"]


def _wait_registered(env: dict[str, str], workers: list[str], timeout_s: float = 60) -> None:
    redis = SyncRedis.from_url(env["ORCHESTRATOR_REDIS_URL"])
    keys = Keys(env["ORCHESTRATOR_NAMESPACE"])
    deadline = time.monotonic() + timeout_s
    try:
        while redis.exists(*(keys.worker_alive(w) for w in workers)) < len(workers):
            assert time.monotonic() < deadline, "workers did not register"
            time.sleep(0.1)
    finally:
        redis.close()


@pytest.fixture(scope="module")
def system(stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[dict[str, str]]:
    """A daemon, a server worker and two client workers; stopped by pid afterwards."""
    env = subprocess_env(stack_env, ORCHESTRATOR_NAMESPACE=unique("client"),
                         ORCHESTRATOR_MONGO_DB=unique("clientdb").replace("-", "_"),
                         ORCHESTRATOR_REAPER_INTERVAL_S="0.2")
    supervisor = Supervisor(tmp_path_factory.mktemp("client"), env)
    try:
        supervisor.start_daemon()
        supervisor.start_worker(SERVER, "server")
        for name in CLIENTS:
            supervisor.start_worker(name, "client")
        _wait_registered(env, [SERVER, *CLIENTS])
        yield env
        supervisor.check()  # nothing crashed during the tests
    finally:
        supervisor.stop_all()
        for child in supervisor.children:
            assert child.popen.returncode is not None
            assert not pid_alive(child.pid)


@pytest.fixture
def client_env(system: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The system's settings in this process's environment (what ``Client()`` reads)."""
    for name in [n for n in os.environ if n.startswith("ORCHESTRATOR_")]:
        monkeypatch.delenv(name)
    for name, value in system.items():
        if name.startswith(("ORCHESTRATOR_", "AWS_")):
            monkeypatch.setenv(name, value)
    return system
