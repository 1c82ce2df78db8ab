"""The dev stack's dashboard: ``orchestrator ui`` as a server of the stack, started by
``dev up`` (unless ``--no-ui``) and stopped by ``dev down``, by its pid like the other servers.

It runs with the **watcher** role's environment (``DIR/env.watcher``: read-only Redis
credentials), on 127.0.0.1 without a token (loopback; read-only), on the port it had last
time when that is free, else 8710, else any free port. Its record (pid, port, URL; no
credentials) is ``DIR/ui/ui.json`` and its log ``DIR/ui/ui.log``. :func:`pick_port` is shared
with ``orchestrator demo --ui``.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from orchestrator.devstack import acl
from orchestrator.devstack.envfiles import read_env_file, role_env_path
from orchestrator.devstack.previous import port_in_use
from orchestrator.devstack.private import private_file
from orchestrator.devstack.process import (
    HOST,
    ServerProcess,
    free_port,
    server_from_record,
    server_record,
    spawn,
    start_server,
)
from orchestrator.ui.options import DEFAULT_PORT

UI_DIR = "ui"
RECORD = "ui.json"
MARKER = "orchestrator.cli.main"


def pick_port(preferred: int | None = None) -> int:
    """``preferred`` if free, else 8710 if free, else any free port of 127.0.0.1."""
    for port in (preferred, DEFAULT_PORT):
        if port is not None and not port_in_use(port):
            return port
    return free_port()


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/healthz", timeout=1.0) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def load(directory: Path) -> tuple[ServerProcess | None, int | None]:
    """The recorded dashboard (None if none is recorded) and its remembered port."""
    path = directory / UI_DIR / RECORD
    try:
        record = json.loads(path.read_text())
        server = server_from_record(record)
    except (OSError, ValueError, KeyError, TypeError):
        return None, None
    return server, server.port


def start(directory: Path, *, namespace: str,
          env: Mapping[str, str] | None = None) -> tuple[ServerProcess, bool]:
    """The stack's dashboard (on Redis namespace ``namespace``), started unless it already
    runs: ``(server, started)``. ``env`` (default: this process's) under the watcher's."""
    directory = directory.resolve()
    running, remembered = load(directory)
    if running is not None and running.alive():
        return running, False
    role = read_env_file(role_env_path(directory, acl.WATCHER))
    child_env = {**(os.environ if env is None else env), **role,
                 "ORCHESTRATOR_NAMESPACE": namespace}
    data_dir = directory / UI_DIR

    def launch(port: int) -> ServerProcess:
        argv = [sys.executable, "-m", MARKER, "ui", "--host", HOST, "--port", str(port)]
        return spawn("ui", argv, data_dir, port=port, url=f"http://{HOST}:{port}/",
                     marker=MARKER, env=child_env)

    server = start_server(pick_port(remembered), launch, _healthy)
    with private_file(data_dir / RECORD) as handle:
        handle.write(json.dumps(server_record(server), indent=2) + "\n")
    return server, True


def stop(directory: Path) -> bool:
    """Stop the recorded dashboard if it is still ours (by pid); True if one was stopped.
    The record stays, so that the next start reuses the port."""
    server, _port = load(directory.resolve())
    if server is None or not server.alive():
        return False
    server.stop()
    return True


__all__ = ["DEFAULT_PORT", "pick_port", "start", "stop"]
