"""``orchestrator logs JOB [--participant P] [--follow] [--json]``: what participants printed.

A participant that ran in a child process of its worker (the default) has its stdout, stderr
and Python logging captured (:mod:`workers.isolation.logs`): tailed live to the job's capped
log stream in Redis while it runs, and stored whole in the object store
(``jobs/JOB/logs/PARTICIPANT.log``) when it ends. This command shows the stored log of each
participant that ended and the live lines of each that still runs; ``--follow`` keeps printing
new lines until the job ends (or, with ``--participant``, until that participant ends).

The lines come from the Python client (:meth:`orchestrator.client.Client.logs`,
``follow_logs``). Text output is one line per captured line (prefixed ``[participant]`` when
more than one is shown); ``--json`` prints one JSON object per line: participant, run_id, at,
stream, line.
Exit codes: 0 shown; 1 a server unreachable; 2 an unknown job or participant.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

import click

from orchestrator.cli.common import EXIT_OK, cli_settings
from orchestrator.cli.output import echo_json, json_option, warn
from orchestrator.cli.running import run_interruptible
from orchestrator.client import Client, LogLine

__all__ = ["Printer", "logs"]


class Printer:
    """Prints lines as text or JSON lines, prefixed when several participants are shown."""

    def __init__(self, *, as_json: bool, prefixed: bool) -> None:
        self.as_json, self.prefixed = as_json, prefixed

    def print(self, lines: Iterable[LogLine]) -> None:
        for line in lines:
            if self.as_json:
                echo_json(line.as_dict(), lines=True)
            else:
                prefix = f"[{line.participant}] " if self.prefixed else ""
                click.echo(f"{prefix}{line.line}")
        sys.stdout.flush()


@click.command()
@click.argument("job_id", metavar="JOB")
@click.option("--participant", "-p", "participant", default=None,
              help="Only this participant (server, client-0, …).")
@click.option("--follow", "-f", is_flag=True,
              help="Keep printing new lines until the job (or the participant) ends.")
@json_option
def logs(job_id: str, participant: str | None, follow: bool, as_json: bool) -> None:
    """The captured output (stdout, stderr, logging) of a job's participants."""
    settings = cli_settings()

    async def main() -> int:
        async with Client(settings) as client:
            job = await client.get(job_id)
            chosen = [participant] if participant is not None else list(job.participants)
            printer = Printer(as_json=as_json, prefixed=len(chosen) > 1)
            if follow:
                async for line in client.follow_logs(job_id, participant):
                    printer.print([line])
                return EXIT_OK
            lines = await client.logs(job_id, participant)
            printer.print(lines)
            if not lines and not as_json:
                warn(f"no captured output for {participant or 'any participant of ' + job_id} "
                     "(yet): only participants that run in a child process have a log (not "
                     "light workloads such as noop, nor workers run with --isolation inline)")
        return EXIT_OK

    sys.exit(run_interruptible(settings, main))
