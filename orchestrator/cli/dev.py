"""``orchestrator dev up|down``: the local stack of real servers (see :mod:`orchestrator.devstack`).

Exit codes: 0 ok, 1 a server did not start / the directory is unusable, 2 bad usage (click).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from orchestrator.devstack.stack import (
    DEFAULT_DIR,
    SECRET_KEYS,
    DevStack,
    ServerStartError,
    StackError,
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
    return {k: v for k, v in stack.env.items() if k not in SECRET_KEYS}


def _summary(stack: DevStack, *, started: bool) -> str:
    state = "started" if started else "already running"
    lines = [f"dev stack {state} in {stack.directory}"]
    for server in stack.servers.values():
        lines.append(f"  {server.name:<6} pid {server.pid:<8} {server.url}   log {server.log_path}")
    lines.append(f"  s3 bucket url: {stack.env.get('ORCHESTRATOR_S3_URL', '?')}")
    lines.append(f"use it with:  set -a; source {stack.env_file}; set +a")
    return "\n".join(lines)


@click.group()
def dev() -> None:
    """Run a local stack of real servers: Redis, S3 (rclone) and a Mongo stand-in."""


@dev.command("up")
@_DIR_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the env (without the secret) as JSON.")
def up_command(directory: Path, as_json: bool) -> None:
    """Start the stack (idempotent) and write DIR/env."""
    try:
        result = up(directory)
    except (ServerStartError, StackError) as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(_public_env(result.stack), indent=2, sort_keys=True))
    else:
        click.echo(_summary(result.stack, started=result.started))


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
