"""``orchestrator workers [--json]``: the live workers, from the registrations their agents
refresh (name, role, capacity, running participants, workloads offered, version, host, last
heartbeat). A worker that stopped refreshing its registration drops off when it expires.

Exit codes: 0 shown (also when none is alive); 1 Redis unreachable; 2 invalid settings.
"""

from __future__ import annotations

import click
from rich.table import Table

from orchestrator.cli.common import EXIT_OK, cli_settings
from orchestrator.cli.output import console, echo_json, json_option
from orchestrator.cli.running import run
from orchestrator.client import Client
from orchestrator.watch.follow import utcnow
from orchestrator.watch.model import age_s, format_age


@click.command()
@json_option
def workers(as_json: bool) -> None:
    """List the live workers: role, capacity, what runs on them, workloads, version."""
    settings = cli_settings()

    async def main() -> int:
        async with Client(settings) as client:
            found = await client.workers()
        if as_json:
            echo_json({"workers": [w.as_dict() for w in found]})
            return EXIT_OK
        if not found:
            click.echo("no live worker (none has a current registration)")
            return EXIT_OK
        now = utcnow()
        table = Table(title=f"live workers ({len(found)})", title_justify="left")
        for column in ("name", "role", "running", "participants", "workloads", "version",
                       "host", "heartbeat"):
            table.add_column(column, overflow="fold")
        for w in found:
            load = f"{w.running if w.running is not None else '?'}/" \
                   f"{w.capacity if w.capacity is not None else '?'}"
            table.add_row(w.name, w.role, load, ", ".join(w.participants) or "-",
                          ", ".join(w.workloads) or "-", w.version or "?", w.host or "?",
                          f"{format_age(age_s(w.last_heartbeat, now))} ago")
        console().print(table)
        return EXIT_OK

    raise SystemExit(run(settings, main))
