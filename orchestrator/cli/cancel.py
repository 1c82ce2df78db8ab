"""``orchestrator cancel JOB``: ask the daemon to cancel a job (through the Python client);
with ``--wait``, until it ends.

Exit codes: 0 requested, or the job already finished (with ``--wait``: it FINISHED_CANCELLED);
1 a server unreachable, or with ``--wait`` a job that ended otherwise; 2 an unknown job id,
invalid settings.
"""

from __future__ import annotations

import sys

import click

from orchestrator.cli.common import EXIT_FAILURE, EXIT_OK, cli_settings
from orchestrator.cli.output import echo_json, json_option, warn
from orchestrator.cli.running import run_waiting
from orchestrator.cli.watch import Mode, follow_job
from orchestrator.client import Client
from orchestrator.client.submitting import requested_by
from orchestrator.core import JobStatus


@click.command()
@click.argument("job_id", metavar="JOB")
@click.option("--reason", default="cancelled by user", show_default=True)
@click.option("--wait", is_flag=True,
              help="Wait until the job is FINISHED_*; exit 0 only if FINISHED_CANCELLED.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0, min_open=True),
              help="With --wait: give up (exit 1) after this many seconds.")
@json_option
def cancel(job_id: str, reason: str, wait: bool, timeout_s: float | None, as_json: bool) -> None:
    """Ask the daemon to cancel a job (its participants are stopped).

    A job that already finished is left alone (exit 0, or 1 with --wait unless it was
    cancelled). Unknown JOB: exit 2.
    """
    settings = cli_settings()

    async def main() -> int:
        async with Client(settings) as client:
            result = await client.cancel(job_id, reason=reason, requested_by_=requested_by("cli"))
            if not result.requested:
                if as_json:
                    echo_json({"id": job_id, "status": result.status.value, "requested": False})
                else:
                    click.echo(f"job {job_id} already {result.status.value}; nothing to cancel")
                if wait and result.status is not JobStatus.FINISHED_CANCELLED:
                    return EXIT_FAILURE
                return EXIT_OK
            if as_json:
                echo_json({"id": job_id, "status": result.status.value, "requested": True,
                           "entry_id": result.entry_id}, lines=wait)
            else:
                click.echo(f"cancel requested for job {job_id} ({result.status.value})")
            if not wait:
                return EXIT_OK
            mode: Mode = "json" if as_json else "quiet"
            outcome = await follow_job(client, job_id, mode=mode, wait_for_job_s=None,
                                       timeout_s=timeout_s)
        if outcome.message:
            warn(outcome.message)
            return EXIT_FAILURE
        final = outcome.status
        if not as_json and final is not None:
            click.echo(f"job {job_id} {final.value}")
        return EXIT_OK if final is JobStatus.FINISHED_CANCELLED else EXIT_FAILURE

    sys.exit(run_waiting(settings, main, wait))
