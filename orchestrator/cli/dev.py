"""``orchestrator dev up|down|status|add-worker``: the local stack of real servers (see
:mod:`orchestrator.devstack`). Redis runs with a user per role (:mod:`orchestrator.devstack.acl`):
``DIR/env`` carries the submitter's Redis URL (the CLI), ``DIR/env.daemon``, ``DIR/env.watcher``
and ``DIR/env.worker.NAME`` the others' (``--worker NAME`` or ``dev add-worker NAME``).

``dev up`` on a directory that held a stack restarts it in place: same ports, same credentials,
same data, so processes left running with the env files reconnect by themselves.

Exit codes: 0 ok, 1 a server did not start / a remembered port is taken / the directory is
unusable (``dev status``: the stack is not fully running), 2 bad usage (click).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from orchestrator.cli.connect import redact
from orchestrator.devstack import acl
from orchestrator.devstack.stack import (
    DEFAULT_DIR,
    DEFAULT_NAMESPACE,
    SECRET_KEYS,
    DevStack,
    ServerStartError,
    StackError,
    add_workers,
    down,
    up,
)
from orchestrator.devstack.status import stack_status

_DIR_OPTION = click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_DIR,
    envvar="ORCHESTRATOR_DEV_DIR",
    show_default=True,
    help="Stack directory (data, logs, env file). Env: ORCHESTRATOR_DEV_DIR.",
)


def _public_env(stack: DevStack) -> dict[str, str]:
    """The env without secrets: no secret keys, URLs without their passwords."""
    return {k: redact(v) if "://" in v else v for k, v in stack.env.items()
            if k not in SECRET_KEYS}


def _summary(stack: DevStack, *, started: bool) -> str:
    state = "started" if started else "already running"
    if started and stack.reused:
        state = "restarted in place (same ports, credentials and data)"
    lines = [f"dev stack {state} in {stack.directory}"]
    for server in stack.servers.values():
        lines.append(f"  {server.name:<6} pid {server.pid:<8} {server.url}   log {server.log_path}")
    lines.append(f"  s3 bucket url: {stack.env.get('ORCHESTRATOR_S3_URL', '?')}")
    lines.append(f"  redis namespace: {stack.namespace} (ACL users per role; default user off)")
    lines.append(f"use it with:  set -a; source {stack.env_file}; set +a   (CLI: submitter)")
    for role in (acl.DAEMON, acl.WATCHER):
        lines.append(f"  {role + ':':<11} set -a; source {stack.role_env_file(role)}; set +a")
    for worker in stack.workers:
        lines.append(f"  {'worker ' + worker + ':':<11} set -a; source "
                     f"{stack.worker_env_file(worker)}; set +a")
    if not stack.workers:
        lines.append("  workers:    orchestrator dev add-worker NAME  (writes DIR/env.worker.NAME)")
    return "\n".join(lines)


@click.group()
def dev() -> None:
    """Run a local stack of real servers: Redis, S3 (rclone) and a Mongo stand-in."""


_NAMESPACE_OPTION = click.option(
    "--namespace",
    default=DEFAULT_NAMESPACE,
    envvar="ORCHESTRATOR_NAMESPACE",
    show_default=True,
    help="Redis key namespace the ACL users are confined to. Env: ORCHESTRATOR_NAMESPACE.",
)


@dev.command("up")
@_DIR_OPTION
@_NAMESPACE_OPTION
@click.option("--worker", "workers", multiple=True, metavar="NAME",
              help="Create a Redis user for worker NAME and DIR/env.worker.NAME (repeatable).")
@click.option("--new-ports", is_flag=True,
              help="Start on new free ports instead of the remembered ones (processes using the "
                   "old env files must then be restarted).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the env (without secrets) as JSON.")
@click.option("--no-ui", is_flag=True,
              help="Do not start the web dashboard (orchestrator ui) for the stack.")
def up_command(directory: Path, namespace: str, workers: tuple[str, ...], new_ports: bool,  # noqa: PLR0917 - one parameter per click option
               as_json: bool, no_ui: bool) -> None:
    """Start the stack (idempotent) and write DIR/env and DIR/env.ROLE.

    On a directory that held a stack, the servers come back on the same ports with the same
    credentials and data, so daemons, workers and watchers left running reconnect.
    """
    try:
        result = up(directory, workers=workers, namespace=namespace, new_ports=new_ports)
    except (ServerStartError, StackError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    ui_line = None if no_ui else _start_dashboard(result.stack)
    if as_json:
        click.echo(json.dumps(_public_env(result.stack), indent=2, sort_keys=True))
    else:
        click.echo(_summary(result.stack, started=result.started))
        if ui_line:
            click.echo(ui_line)


def _start_dashboard(stack: DevStack) -> str:
    """Start the stack's dashboard (the watcher's credentials); the line that says where."""
    from orchestrator.devstack import dashboard  # noqa: PLC0415

    try:
        server, started = dashboard.start(stack.directory, namespace=stack.namespace)
    except (ServerStartError, StackError, OSError) as exc:
        return f"dashboard: did not start ({exc}); dev up --no-ui skips it"
    state = "" if started else " (already running)"
    return f"dashboard: {server.url}{state}   log {server.log_path}"


@dev.command("add-worker")
@_DIR_OPTION
@click.argument("names", nargs=-1, required=True)
def add_worker_command(directory: Path, names: tuple[str, ...]) -> None:
    """Give workers NAMES Redis users on the running stack; write DIR/env.worker.NAME."""
    try:
        added = add_workers(directory, names)
        stack = DevStack.load(directory)
    except (StackError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    assert stack is not None
    for name in names:
        state = "added" if name in added else "exists"
        click.echo(f"worker {name} ({state}): set -a; source {stack.worker_env_file(name)}; "
                   f"set +a; orchestrator worker --name {name} --role server|client")


@dev.command("down")
@_DIR_OPTION
@click.option("--purge", is_flag=True, help="Also delete DIR (data and logs).")
def down_command(directory: Path, purge: bool) -> None:
    """Stop the servers recorded in DIR/stack.json."""
    existed = directory.exists()
    try:
        stopped = down(directory, purge=purge)
    except StackError as exc:
        raise click.ClickException(str(exc)) from exc
    if stopped:
        click.echo(f"stopped {', '.join(stopped)} ({directory})")
    else:
        click.echo(f"no dev stack running in {directory}")
    if purge and existed:
        click.echo(f"removed {directory}")


def _status_text(report: dict[str, Any]) -> str:
    lines = [f"dev stack in {report['directory']}: {report['state']}"
             + (f" (redis namespace {report['namespace']})" if report["namespace"] else "")]
    for server in report["servers"]:
        pid = "-" if server["pid"] is None else str(server["pid"])
        where = server["url"] or f"port {server['port']}"
        if server["alive"]:
            health = "alive"
        elif server.get("port_in_use"):
            health = f"DOWN, port {server['port']} taken by another process"
        else:
            health = "down" + (" (dev up restarts it on the same port)" if server["port"] else "")
        lines.append(f"  {server['name']:<6} pid {pid:<8} {where:<28} {health}")
    ui = report.get("dashboard")
    if ui is not None:
        health = "alive" if ui["alive"] else "down (dev up starts it)"
        pid = str(ui["pid"]) if ui["alive"] else "-"
        lines.append(f"  {'ui':<6} pid {pid:<8} {ui['url']:<28} {health}")
    lines.append("env files:")
    for entry in report["env_files"]:
        missing = "" if entry["exists"] else "  (missing)"
        lines.append(f"  {entry['role']:<16} {entry['path']}{missing}")
    if report["workers"]:
        lines.append("workers with Redis users:")
        for worker in report["workers"]:
            lines.append(f"  {worker['name']:<16} {worker['env_file']}")
    else:
        lines.append("workers with Redis users: none (orchestrator dev add-worker NAME)")
    return "\n".join(lines)


@dev.command("status")
@_DIR_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def status_command(directory: Path, as_json: bool) -> None:
    """What runs where: each server's pid, port and liveness, the env files, the workers.

    Exit 0 if every server runs, 1 otherwise (stopped, partly running or no stack in DIR).
    """
    try:
        report = stack_status(directory)
    except (StackError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(report, indent=2, sort_keys=True))
    elif report["state"] == "absent":
        click.echo(f"no dev stack in {report['directory']} (orchestrator dev up)")
    else:
        click.echo(_status_text(report))
    sys.exit(0 if report["state"] == "running" else 1)
