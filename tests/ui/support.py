"""The dashboard under test: a live system (a real daemon and workers, as processes, in their
own namespace and database) and ``orchestrator ui`` served by a real uvicorn in a subprocess,
started on a free port of 127.0.0.1 and stopped by pid.

Why a subprocess and not httpx's ASGI transport: server-sent events must really stream (the
ASGI transport buffers a whole response), the startup checks of the command are part of what
is tested, and the browser tests drive the same server.
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx
from helpers import live_supervisor, unique

from orchestrator.demo import Child, Supervisor
from orchestrator.settings import Settings

STARTUP = re.compile(r"dashboard: (http://\S+)")
START_TIMEOUT_S = 30.0


@dataclass
class UiProcess:
    """One ``orchestrator ui`` subprocess: its base URL (no token in it) and its output."""

    popen: subprocess.Popen[str]
    url: str
    startup_line: str
    log_path: Path

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_ui(env: Mapping[str, str], log_dir: Path, *args: str,
             token: str | None = None) -> UiProcess:
    """``orchestrator ui --port 0 ARGS`` with ``env`` (plus ``ORCHESTRATOR_UI_TOKEN`` when
    ``token``), once its startup line is printed and ``/healthz`` answers."""
    run_env = dict(env)
    if token is not None:
        run_env["ORCHESTRATOR_UI_TOKEN"] = token
    log_path = log_dir / f"{unique('ui')}.log"
    log: IO[str]
    with log_path.open("w") as log:
        popen = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli.main", "ui", "--port", "0", *args],
            env=run_env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            text=True, start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        text = log_path.read_text(errors="replace")
        found = STARTUP.search(text)
        if found:
            break
        if popen.poll() is not None or time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                popen.kill()
            popen.wait()
            raise AssertionError(f"orchestrator ui did not start:\n{text}")
        time.sleep(0.05)
    printed = found.group(1)
    base = printed.split("login?", 1)[0].split("?", 1)[0]
    process = UiProcess(popen, base, found.group(0), log_path)
    while True:
        try:
            if httpx.get(base + "healthz", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        if popen.poll() is not None or time.monotonic() > deadline:
            process.stop()
            raise AssertionError(f"orchestrator ui did not answer:\n{process.output()}")
        time.sleep(0.05)


@dataclass
class LiveSystem:
    """A daemon and workers (processes) in their own namespace and database."""

    env: dict[str, str]
    supervisor: Supervisor
    workers: list[str]

    def restart_daemon(self) -> None:
        """Stop the daemon (SIGTERM by pid, SIGKILL after 10 s) and start a new one."""
        for child in self.daemons():
            if child.alive():
                child.popen.send_signal(signal.SIGTERM)
                try:
                    child.popen.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    child.popen.kill()
                    child.popen.wait()
        self.supervisor.start_daemon()

    def daemons(self) -> list[Child]:
        return [c for c in self.supervisor.children if c.role == "daemon"]

    def check(self) -> None:
        """Nothing started died (daemons stopped on purpose by a restart aside)."""
        newest = self.daemons()[-1]
        for child in self.supervisor.children:
            if child.role == "daemon" and child is not newest:
                continue
            assert child.alive(), f"{child.name} died:\n{child.log_tail()}"


@contextlib.contextmanager
def live_system(stack_env: Mapping[str, str], directory: Path, prefix: str, server: str,
                clients: Sequence[str]) -> Iterator[LiveSystem]:
    """A daemon and the workers, registered before it yields; stopped by pid afterwards."""
    with live_supervisor(stack_env, directory, prefix, server, clients) as (env, supervisor):
        system = LiveSystem(env, supervisor, [server, *clients])
        yield system
        system.check()


@dataclass
class UiServer:
    """What the ``ui_server`` fixture yields: the dashboard's base URL (``http://…/``), the
    live system's environment (the CLI's settings of it), the token (None: none asked) and
    :meth:`restart_daemon`."""

    url: str
    env: dict[str, str]
    token: str | None
    system: LiveSystem
    process: UiProcess

    def restart_daemon(self) -> None:
        """Stop the system's daemon by pid and start a new one (the dashboard stays)."""
        self.system.restart_daemon()

    @property
    def workers(self) -> list[str]:
        return self.system.workers


@contextlib.contextmanager
def dashboard_on(system: LiveSystem, directory: Path, *args: str,
                 token: str | None = None) -> Iterator[UiServer]:
    """``orchestrator ui ARGS`` on ``system``; stopped by pid afterwards."""
    process = start_ui(system.env, directory, *args, token=token)
    try:
        yield UiServer(process.url, system.env, token, system, process)
        assert process.popen.poll() is None, process.output()  # it did not die
    finally:
        process.stop()


def settings_of(env: Mapping[str, str]) -> Settings:
    """The settings a process with ``env`` would read (``ORCHESTRATOR_*`` of ``env`` win)."""
    fields = Settings.model_fields
    given = {k.removeprefix("ORCHESTRATOR_").lower(): v for k, v in env.items()
             if k.startswith("ORCHESTRATOR_")}
    return Settings(**{k: v for k, v in given.items() if k in fields})


def job_spec(job_id: str, workload: str, *, server: str, clients: Sequence[str],
             rounds: int = 1, labels: Mapping[str, str] | None = None,
             config: Mapping[str, object] | None = None,
             client_config: Mapping[str, object] | None = None) -> dict[str, object]:
    """A spec on the fixture's workers."""
    return {
        "job_id": job_id, "workload": workload, "rounds": rounds,
        "server": {"worker": server, "config": dict(config or {})},
        "clients": [{"worker": name, "config": dict(client_config or config or {})}
                    for name in clients],
        "timeouts": {"start_s": 30, "heartbeat_s": 10, "round_s": 60, "job_s": 120},
        "labels": dict(labels or {}),
    }


FEDAVG_SERVER = {"seed": 3, "features": 8, "classes": 3, "test_samples": 100}
FEDAVG_CLIENT = {"seed": 3, "features": 8, "classes": 3, "samples": 60}
