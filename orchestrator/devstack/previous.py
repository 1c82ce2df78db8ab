"""What an earlier start of a stack directory left to reuse: its ports and credentials.

Why: daemons, workers and watchers started from the env files keep the URLs and credentials they
read at start, and retry a dead port forever. For ``dev down`` then ``dev up`` to be a restart
*in place* that they ride through, the new servers must listen where the old ones did and accept
the same users, passwords and keys. The env files (``DIR/env``, ``DIR/env.ROLE``,
``DIR/env.worker.NAME``, all 0600) are exactly what those processes read, so they are the record:
nothing else is stored, and no secret is written anywhere new.

A remembered port that another process took meanwhile is refused loudly
(:class:`PortTakenError`: which server, which port, what to do), never silently moved: a silent
move would strand every process still pointed at the old port.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from orchestrator.devstack import acl
from orchestrator.devstack.envfiles import (
    AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY,
    DAEMON_KEY,
    ENV_FILE,
    MONGO_URL,
    REDIS_URL,
    S3_ENDPOINT_URL,
    StackError,
    read_env_file,
    role_env_path,
)
from orchestrator.devstack.process import HOST


class PortTakenError(StackError):
    """A server's remembered port is held by another process: the stack cannot restart in place."""


@dataclass(frozen=True)
class Previous:
    """Ports and credentials of an earlier start (empty for a new directory)."""

    ports: dict[str, int] = field(default_factory=dict)
    """Server name (``redis``, ``s3``, ``mongo``) -> port."""
    passwords: dict[str, str] = field(default_factory=dict, repr=False)
    """Redis ACL user -> password."""
    access_key: str | None = None
    secret_key: str | None = field(default=None, repr=False)
    daemon_key: str | None = field(default=None, repr=False)
    source: Path | None = None
    """The env file the ports were read from."""

    @property
    def empty(self) -> bool:
        return not self.ports and not self.passwords and self.access_key is None


def _env_files(directory: Path, users: Iterable[str]) -> dict[str, Path]:
    return {user: role_env_path(directory, user) for user in users}


def _read(path: Path) -> dict[str, str]:
    try:
        return read_env_file(path)
    except FileNotFoundError:
        return {}


def _port(url: str | None) -> int | None:
    if not url:
        return None
    with contextlib.suppress(ValueError):
        return urlsplit(url).port
    return None


def remembered(directory: Path, workers: Iterable[str] = ()) -> Previous:
    """The ports and credentials the env files in ``directory`` hold (for the fixed roles and
    ``workers``); whatever is missing is simply not remembered."""
    users = [*acl.FIXED_ROLES, *(acl.worker_user(w) for w in workers)]
    passwords: dict[str, str] = {}
    redis_port: int | None = None
    for user, path in _env_files(directory, users).items():
        url = _read(path).get(REDIS_URL)
        if not url:
            continue
        parts = urlsplit(url)
        if parts.username is not None and unquote(parts.username) == user and parts.password:
            passwords[user] = unquote(parts.password)
        redis_port = redis_port or _port(url)
    daemon_path = role_env_path(directory, acl.DAEMON)
    daemon_env = _read(daemon_path)
    source, env = directory / ENV_FILE, _read(directory / ENV_FILE)
    if not env:
        source, env = daemon_path, daemon_env
    ports = {"redis": redis_port, "s3": _port(env.get(S3_ENDPOINT_URL)),
             "mongo": _port(env.get(MONGO_URL))}
    access_key, secret_key = env.get(AWS_ACCESS_KEY_ID), env.get(AWS_SECRET_ACCESS_KEY)
    if not access_key or not secret_key:
        access_key = secret_key = None
    return Previous(
        ports={name: port for name, port in ports.items() if port},
        passwords=passwords,
        access_key=access_key,
        secret_key=secret_key,
        daemon_key=daemon_env.get(DAEMON_KEY) or None,
        source=source if env else None,
    )


def port_in_use(port: int, host: str = HOST) -> bool:
    """True if another socket listens on ``host:port`` (a binding test, as the servers bind with
    ``SO_REUSEADDR``: connections of the old server in TIME_WAIT do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def check_ports_free(previous: Previous, directory: Path) -> None:
    """Raise :class:`PortTakenError` naming the first remembered port another process holds."""
    for name, port in previous.ports.items():
        if port_in_use(port):
            raise PortTakenError(
                f"cannot restart the {name} server of {directory} in place: its port {port} "
                f"(remembered in {previous.source}) is now used by another process. Stop that "
                f"process (`ss -ltnp 'sport = :{port}'` shows it) and run `orchestrator dev up` "
                "again, or run `orchestrator dev up --new-ports` to start on new ports (same "
                "credentials and data; restart the daemons, workers and watchers from the "
                "rewritten env files afterwards)"
            )


__all__ = ["PortTakenError", "Previous", "check_ports_free", "port_in_use",
           "remembered"]
