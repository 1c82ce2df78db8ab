"""``orchestrator workloads``: the workloads that live workers offer, with their options.

Each worker advertises, in its registration, the workloads it can run: name, version and the
JSON Schemas of their server and client configuration. ``--json`` prints them whole.
"""

from __future__ import annotations

from typing import Any

import click

from orchestrator.cli.common import EXIT_OK, cli_settings
from orchestrator.cli.output import echo_json, json_option
from orchestrator.cli.running import run
from orchestrator.client import Client


def offered(alive: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """workload name -> version, config schemas and the workers (with their role) offering it."""
    found: dict[str, dict[str, Any]] = {}
    for worker, info in sorted(alive.items()):
        for name, described in sorted((info.get("workloads") or {}).items()):
            entry = found.setdefault(name, {**described, "workers": []})
            entry["workers"].append({"name": worker, "role": info.get("role")})
    return found


def _options(schema: dict[str, Any] | None) -> str:
    if schema is None:
        return "any"
    return ", ".join(schema.get("properties", {})) or "none"


@click.command()
@json_option
def workloads(as_json: bool) -> None:
    """List the workloads that live workers offer, and their configuration options."""
    settings = cli_settings()

    async def main() -> int:
        async with Client(settings) as client:
            alive = await client.alive_workers()
        found = offered(alive)
        if as_json:
            echo_json({"workloads": found})
            return EXIT_OK
        if not found:
            click.echo("no live worker offers a workload")
            return EXIT_OK
        for name, entry in found.items():
            workers = ", ".join(f"{w['name']} ({w['role']})" for w in entry["workers"])
            click.echo(f"{name} (version {entry.get('version', '?')}): {workers}")
            click.echo(f"  server options: {_options(entry.get('server_config'))}")
            click.echo(f"  client options: {_options(entry.get('client_config'))}")
        return EXIT_OK

    raise SystemExit(run(settings, main))
