"""Generic server process management: spawn a server in its own session with its log in its data
directory, wait until it answers, stop it by PID only (never by name).

This is synchronous process management used by the ``dev`` CLI and the test fixtures, so the
wait loops here poll with short sleeps.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

from orchestrator.devstack.private import PRIVATE_UMASK, private_dir, private_file
from orchestrator.errors import OrchestratorError

HOST = "127.0.0.1"
"""The only address the servers bind to."""

START_TIMEOUT_S = 15.0
_POLL_INTERVAL_S = 0.05
_PORT_ATTEMPTS = 3
_LOG_TAIL_LINES = 20


_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
"""Servers this process spawned and has not reaped yet, by PID: whichever ``ServerProcess`` object
stops one (even one loaded from a state file) reaps it through its ``Popen``."""


class ServerStartError(OrchestratorError):
    """A server binary is missing, or the server died or did not answer in time."""


@dataclass
class ServerProcess:
    """A running server we started; stop it with :meth:`stop` (by PID only)."""

    name: str
    pid: int
    host: str
    port: int
    url: str
    data_dir: Path
    log_path: Path
    marker: str = ""
    """A string that the process's ``/proc/PID/cmdline`` contains (guards against PID reuse)."""

    def alive(self) -> bool:
        """True while the process runs (a zombie counts as dead).

        For a process we did not spawn ourselves (loaded from a state file), the PID must also
        still carry ``marker`` in its command line, so a reused PID is never mistaken for it.
        """
        child = _CHILDREN.get(self.pid)
        if child is not None:
            if child.poll() is None:
                return True
            del _CHILDREN[self.pid]
            return False
        if self.marker:
            return cmdline_matches(self.pid, self.marker)
        return pid_alive(self.pid)

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM, wait up to ``timeout_s``, then SIGKILL. Idempotent."""
        if not self.alive():
            return
        self._signal(signal.SIGTERM)
        if not self._wait_exit(timeout_s):
            self._signal(signal.SIGKILL)
            self._wait_exit(timeout_s)

    def kill(self) -> None:
        """SIGKILL the process and wait for it to go (for fault-injection tests)."""
        if self.alive():
            self._signal(signal.SIGKILL)
            self._wait_exit(5.0)

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines of the server's log."""
        return log_tail(self.log_path, lines)

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)

    def _wait_exit(self, timeout_s: float) -> bool:
        child = _CHILDREN.get(self.pid)
        if child is None:
            return wait_pid_exit(self.pid, timeout_s)
        try:
            child.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return False
        del _CHILDREN[self.pid]
        return True


def server_record(server: ServerProcess) -> dict[str, Any]:
    """``server`` as a JSON-able record (no credentials: an S3 server's keys are left out)."""
    return {
        "name": server.name,
        "pid": server.pid,
        "host": server.host,
        "port": server.port,
        "url": server.url,
        "data_dir": str(server.data_dir),
        "log_path": str(server.log_path),
        "marker": server.marker,
    }


def server_from_record(record: dict[str, Any]) -> ServerProcess:
    """The :class:`ServerProcess` of a :func:`server_record` (e.g. from a state file)."""
    return ServerProcess(
        name=str(record["name"]),
        pid=int(record["pid"]),
        host=str(record["host"]),
        port=int(record["port"]),
        url=str(record["url"]),
        data_dir=Path(record["data_dir"]),
        log_path=Path(record["log_path"]),
        marker=str(record["marker"]),
    )


# --- process helpers -------------------------------------------------------------------------


def pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs (macOS): trust kill(0)
    # Format: "PID (comm) STATE ..." where comm may contain spaces or parentheses.
    state = stat.rpartition(")")[2].split()[0]
    return state not in ("Z", "X")


def pid_cmdline(pid: int) -> list[str] | None:
    """The argv of ``pid`` from procfs, or None if unavailable."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def cmdline_matches(pid: int, marker: str) -> bool:
    """True if ``pid`` is alive and its command line contains ``marker``."""
    if not pid_alive(pid):
        return False
    argv = pid_cmdline(pid)
    return argv is not None and any(marker in arg for arg in argv)


def wait_pid_exit(pid: int, timeout_s: float) -> bool:
    """Poll until ``pid`` is gone (reaping it if it is our child); True if it exited."""
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(ChildProcessError):  # not our child: someone else reaps it
            os.waitpid(pid, os.WNOHANG)
        if not pid_alive(pid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_INTERVAL_S)


def free_port(host: str = HOST) -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a log file ('' if it does not exist)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


# --- starting ----------------------------------------------------------------------------------


def wait_until_ready(
    server: ServerProcess, probe: Callable[[], bool], timeout_s: float = START_TIMEOUT_S
) -> None:
    """Block until ``probe()`` is true; raise :class:`ServerStartError` with the log tail if the
    process dies or ``timeout_s`` passes (the process is stopped in that case)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if not server.alive():
            server.stop()
            raise ServerStartError(
                f"{server.name} server (pid {server.pid}) exited during startup; "
                f"log {server.log_path}:\n{server.log_tail()}"
            )
        if probe():
            return
        if time.monotonic() >= deadline:
            server.stop()
            raise ServerStartError(
                f"{server.name} server (pid {server.pid}) did not answer on port {server.port} "
                f"within {timeout_s:.0f} s; log {server.log_path}:\n{server.log_tail()}"
            )
        time.sleep(_POLL_INTERVAL_S)


def spawn(
    name: str,
    argv: Sequence[str],
    data_dir: Path,
    *,
    port: int,
    url: str,
    marker: str,
    env: Mapping[str, str] | None = None,
) -> ServerProcess:
    """Spawn ``argv`` in its own session, its output appended to ``data_dir/NAME.log`` (it is
    not waited on: see :func:`start_server`)."""
    private_dir(data_dir)
    log_path = data_dir / f"{name}.log"
    log: IO[bytes]
    with private_file(log_path, "ab") as log:
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            umask=PRIVATE_UMASK,  # whatever the server creates: dirs 0700, files 0600
        )
    _CHILDREN[popen.pid] = popen
    return ServerProcess(
        name=name,
        pid=popen.pid,
        host=HOST,
        port=port,
        url=url,
        data_dir=data_dir,
        log_path=log_path,
        marker=marker,
    )


_ServerT = TypeVar("_ServerT", bound=ServerProcess)


def start_server(
    port: int | None,
    launch: Callable[[int], _ServerT],
    probe: Callable[[int], bool],
) -> _ServerT:
    """Launch and wait; with an automatic port, retry a few times if another process won it."""
    attempts = 1 if port is not None else _PORT_ATTEMPTS
    for attempt in range(attempts):
        chosen = port if port is not None else free_port()
        server = launch(chosen)
        try:
            wait_until_ready(server, functools.partial(probe, chosen))
        except ServerStartError:
            lost_port_race = "in use" in server.log_tail().lower()
            if attempt + 1 < attempts and lost_port_race:
                continue
            raise
        return server
    raise AssertionError("unreachable")  # pragma: no cover
