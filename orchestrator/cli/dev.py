"""``orchestrator dev up|down|add-worker``: the local stack of real servers (see
:mod:`orchestrator.devstack`). Redis runs with a user per role (:mod:`orchestrator.devstack.acl`):
``DIR/env`` carries the submitter's Redis URL (the CLI), ``DIR/env.daemon``, ``DIR/env.watcher``
and ``DIR/env.worker.NAME`` the others' (``--worker NAME`` or ``dev add-worker NAME``).

Exit codes: 0 ok, 1 a server did not start / the directory is unusable, 2 bad usage (click).
"""

from __future__ import annotations

import json
from pathlib import Path

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
@click.option("--json", "as_json", is_flag=True,
              help="Print the env (without secrets) as JSON.")
def up_command(directory: Path, namespace: str, workers: tuple[str, ...], as_json: bool) -> None:
    """Start the stack (idempotent) and write DIR/env and DIR/env.ROLE."""
    try:
        result = up(directory, workers=workers, namespace=namespace)
    except (ServerStartError, StackError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(_public_env(result.stack), indent=2, sort_keys=True))
    else:
        click.echo(_summary(result.stack, started=result.started))


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
