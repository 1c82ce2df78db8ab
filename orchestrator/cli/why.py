"""``orchestrator why JOB [--json]``: a short causal account of how a job ended, from its own
records (:func:`orchestrator.client.why.explain`): the rule and event (or deadline) that
ended it, the participant it names with its last heartbeat and sequence number, refused
events that claimed the job, and what the operator can do. For a rejected submission, the
daemon's reason.

Exit codes: 0 explained; 1 MongoDB unreachable; 2 an unknown job id, invalid settings.
"""

from __future__ import annotations

import click

from orchestrator.cli.common import EXIT_OK, cli_settings
from orchestrator.cli.output import echo_json, json_option
from orchestrator.cli.running import run
from orchestrator.client import Client


@click.command()
@click.argument("job_id", metavar="JOB")
@json_option
def why(job_id: str, as_json: bool) -> None:
    """Why a job ended the way it did (or where it stands), and what to do about it."""
    settings = cli_settings()

    async def main() -> int:
        async with Client(settings) as client:
            explanation = await client.why(job_id)
        if as_json:
            echo_json(explanation.as_dict())
        else:
            for line in explanation.lines():
                click.echo(line)
        return EXIT_OK

    raise SystemExit(run(settings, main))
