"""Helpers shared by the test suite (kept out of conftest.py so they can be imported)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.devstack import stack

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

    from orchestrator.demo import Supervisor

TEST_BUCKET = "test-bucket"
#: The workers of the session's live system (the ``live_env`` fixture, tests/conftest.py).
LIVE_SERVER, LIVE_CLIENTS = "live-server", ["live-client-1", "live-client-2"]


def unique(prefix: str = "test") -> str:
    """A short unique name such as ``test-1a2b3c4d``."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def subprocess_env(stack_env: Mapping[str, str], **extra: str) -> dict[str, str]:
    """``os.environ`` + ``stack_env`` + ``extra``, without inherited ``ORCHESTRATOR_*`` settings
    (so a developer's own configuration never leaks into a test)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    env.update(stack_env)
    env.update(extra)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def run_cli(
    *args: str | Path, env: Mapping[str, str] | None = None, timeout_s: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Run ``orchestrator ARGS...`` through the real entry point; output is captured as text."""
    argv: Sequence[str] = [sys.executable, "-m", "orchestrator.cli.main", *map(str, args)]
    return subprocess.run(
        argv,
        env=dict(env) if env is not None else None,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def run_clis(commands: Sequence[Sequence[str | Path]], env: Mapping[str, str],
             timeout_s: float = 60.0) -> list[subprocess.CompletedProcess[str]]:
    """``run_cli`` of several independent commands, their processes running at once (each
    spends most of its time importing); the results in the order of ``commands``."""
    procs = [subprocess.Popen([sys.executable, "-m", "orchestrator.cli.main", *map(str, c)],
                              env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for c in commands]
    results = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            for other in procs:
                if other.poll() is None:
                    other.kill()
                    other.wait()
            raise
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return results


def s3_client(s3_env: Mapping[str, str]) -> S3Client:
    """A boto3 S3 client for an ``s3_env`` dict (see the fixture in conftest.py)."""
    return stack.s3_client(s3_env["endpoint_url"], s3_env["access_key"], s3_env["secret_key"])


@contextlib.contextmanager
def live_supervisor(stack_env: Mapping[str, str], directory: Path, prefix: str, server: str,
                    clients: Sequence[str]) -> Iterator[tuple[dict[str, str], Supervisor]]:
    """A real daemon, a server worker and client workers (processes) in their own namespace
    and database, registered before it yields their environment and supervisor; stopped by
    pid after."""
    from orchestrator.demo import Supervisor  # noqa: PLC0415 - only for the live tests
    from orchestrator.devstack.servers import pid_alive  # noqa: PLC0415

    env = subprocess_env(stack_env, ORCHESTRATOR_NAMESPACE=unique(prefix),
                         ORCHESTRATOR_MONGO_DB=unique(f"{prefix}db").replace("-", "_"),
                         ORCHESTRATOR_REAPER_INTERVAL_S="0.2")
    supervisor = Supervisor(directory, env)
    try:
        supervisor.start_daemon()
        supervisor.start_worker(server, "server")
        for name in clients:
            supervisor.start_worker(name, "client")
        wait_registered(env, [server, *clients])
        yield env, supervisor
    finally:
        supervisor.stop_all()
        for child in supervisor.children:
            assert child.popen.returncode is not None
            assert not pid_alive(child.pid)


@contextlib.contextmanager
def live_system(stack_env: Mapping[str, str], directory: Path, prefix: str, server: str,
                clients: Sequence[str]) -> Iterator[dict[str, str]]:
    """:func:`live_supervisor`'s environment; nothing may have crashed when it is left."""
    with live_supervisor(stack_env, directory, prefix, server, clients) as (env, supervisor):
        yield env
        supervisor.check()  # nothing crashed during the tests


def wait_registered(env: Mapping[str, str], workers: Sequence[str],
                    timeout_s: float = 60) -> None:
    """Until every worker's alive key exists (submit's checks read them)."""
    from redis import Redis  # noqa: PLC0415

    from orchestrator.bus.keys import Keys  # noqa: PLC0415

    redis = Redis.from_url(env["ORCHESTRATOR_REDIS_URL"])
    keys = Keys(env["ORCHESTRATOR_NAMESPACE"])
    deadline = time.monotonic() + timeout_s
    try:
        while redis.exists(*(keys.worker_alive(w) for w in workers)) < len(workers):
            assert time.monotonic() < deadline, "workers did not register"
            time.sleep(0.1)
    finally:
        redis.close()
