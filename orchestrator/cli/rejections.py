"""``orchestrator rejections [--since TIME] [--job JOB] [--json]``: submissions the daemon
refused, newest first, with the reason it recorded (invalid_spec, duplicate_job, oversize …).

``--since`` takes an ISO 8601 time (UTC when it names no zone) or an age such as ``90s``,
``15m``, ``2h``, ``1d``. Exit codes: 0 shown (also when there are none); 1 MongoDB
unreachable; 2 a bad --since, invalid settings.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import click
from rich.table import Table

from orchestrator.cli.common import EXIT_OK, BadInput, cli_settings
from orchestrator.cli.output import console, echo_json, json_option
from orchestrator.cli.query import parse_time, rejection_row
from orchestrator.cli.running import run
from orchestrator.client import Client
from orchestrator.watch.follow import utcnow

_AGE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def parse_since(value: str | None, now: datetime) -> datetime | None:
    """An age (``15m``) back from ``now``, or an ISO 8601 time."""
    if value is None:
        return None
    match = _AGE.match(value.strip())
    if match:
        return now - timedelta(seconds=float(match[1]) * _UNIT_S[match[2]])
    try:
        return parse_time(value, "--since")
    except BadInput:
        raise BadInput(f"--since {value!r}: give an age (90s, 15m, 2h, 1d) or an ISO 8601 "
                       "time") from None


@click.command()
@click.option("--since", metavar="AGE|TIME", help="Only those since then (15m, 2h, or a time).")
@click.option("--job", "job_id", metavar="JOB", help="Only those naming this job id.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@json_option
def rejections(since: str | None, job_id: str | None, limit: int, as_json: bool) -> None:
    """Submissions the daemon refused, newest first, with its reasons."""
    settings = cli_settings()
    after = parse_since(since, utcnow())

    async def main() -> int:
        async with Client(settings) as client:
            rows = await client.rejections(since=after, limit=limit, job_id=job_id)
        if as_json:
            echo_json({"rejections": [rejection_row(r) for r in rows]})
            return EXIT_OK
        if not rows:
            click.echo("no rejected submissions" + (" in that time" if since else ""))
            return EXIT_OK
        table = Table(title=f"rejected submissions ({len(rows)}, newest first)",
                      title_justify="left")
        for column in ("at (UTC)", "kind", "job", "reason"):
            table.add_column(column, overflow="fold")
        for r in rows:
            table.add_row(f"{r.at:%Y-%m-%d %H:%M:%S}", r.kind, r.job_id or "-", r.reason)
        console().print(table)
        return EXIT_OK

    raise SystemExit(run(settings, main))
