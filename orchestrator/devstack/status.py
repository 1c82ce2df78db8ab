"""``orchestrator dev status``: what runs where in a stack directory, as plain data.

Why: after ``dev down`` (or a crash) an operator needs to see at a glance which server is up,
on which port, which env file each role reads and which workers have users — and, for a
stopped stack, the ports a ``dev up`` will reuse and whether another process took one.
Nothing secret is in the report: server URLs carry no credentials, env files are named, not read
out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orchestrator.devstack import acl, dashboard
from orchestrator.devstack.envfiles import ENV_FILE, role_env_path
from orchestrator.devstack.lifecycle import DevStack, known_workers
from orchestrator.devstack.previous import port_in_use, remembered

SERVER_NAMES = ("redis", "s3", "mongo")


def stack_status(directory: Path) -> dict[str, Any]:
    """The state of the stack in ``directory``: ``state`` is ``running`` (every server alive),
    ``partial``, ``stopped`` (ports remembered, nothing alive) or ``absent`` (no stack here).

    ``servers`` lists each server with ``pid`` (None when not recorded), ``port``, ``url``,
    ``alive`` and, when not alive, ``port_in_use`` (another process holds its port: ``dev up``
    would refuse); ``env_files`` each role's file and whether it exists; ``workers`` the workers
    with a Redis user and their env files; ``dashboard`` the stack's web dashboard (pid,
    port, URL, alive; None if ``dev up`` never started one). The dashboard does not count in
    ``state``.
    """
    directory = directory.resolve()
    stack = DevStack.load(directory)
    workers = sorted({*(stack.workers if stack else []), *known_workers(directory)})
    previous = remembered(directory, workers) if directory.is_dir() else None
    servers: list[dict[str, Any]] = []
    for name in SERVER_NAMES:
        recorded = stack.servers.get(name) if stack is not None else None
        port = recorded.port if recorded else (previous.ports.get(name) if previous else None)
        if recorded is None and port is None:
            continue
        alive = recorded is not None and recorded.alive()
        row: dict[str, Any] = {
            "name": name,
            "pid": recorded.pid if recorded else None,
            "port": port,
            "url": recorded.url if recorded else None,
            "alive": alive,
            "log": str(recorded.log_path if recorded else directory / name / f"{name}.log"),
        }
        if not alive and port is not None:
            row["port_in_use"] = port_in_use(port)
        servers.append(row)
    alive_count = sum(s["alive"] for s in servers)
    if not servers:
        state = "absent"
    elif alive_count == len(SERVER_NAMES):
        state = "running"
    elif alive_count:
        state = "partial"
    else:
        state = "stopped"
    roles = [acl.SUBMITTER, acl.DAEMON, acl.WATCHER, acl.ADMIN]
    env_files = [{"role": "cli (submitter)", "path": str(directory / ENV_FILE),
                  "exists": (directory / ENV_FILE).exists()}]
    env_files += [{"role": role, "path": str(path), "exists": path.exists()}
                  for role in roles if (path := role_env_path(directory, role))]
    ui, ui_port = dashboard.load(directory)
    return {
        "directory": str(directory),
        "state": state,
        "dashboard": None if ui is None else {
            "pid": ui.pid, "port": ui_port, "url": ui.url, "alive": ui.alive(),
            "log": str(ui.log_path)},
        "namespace": stack.namespace if stack is not None else None,
        "servers": servers,
        "env_files": env_files,
        "workers": [{"name": w, "user": acl.worker_user(w),
                     "env_file": str(role_env_path(directory, acl.worker_user(w)))}
                    for w in workers],
    }


__all__ = ["SERVER_NAMES", "stack_status"]
