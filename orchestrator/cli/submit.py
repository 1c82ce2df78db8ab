"""``orchestrator submit SPEC.json|-``: validate a job spec locally and put it on the submissions
stream (through :meth:`orchestrator.client.Client.submit`); with ``--wait``, follow the job.

Before it submits, it reads the registrations of the spec's workers and warns (stderr) about
each that is not registered or cannot run its participant (the other role, the workload not
offered); it submits anyway, since workers may come later.

Exit codes: 0 submitted (with ``--wait``: the job FINISHED_SUCCESSFULLY); 1 a server
unreachable, or with ``--wait`` a job that did not succeed; 2 an unreadable or invalid spec,
invalid settings.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from orchestrator.cli.common import EXIT_OK, BadInput, cli_settings
from orchestrator.cli.output import echo_json, json_option, warn
from orchestrator.cli.running import run_waiting
from orchestrator.cli.watch import Mode, follow_job
from orchestrator.client import Client
from orchestrator.client.specs import (
    IDEMPOTENT_JOB_IDS,
    SpecProblems,
    job_id_for,
    parse_spec,
    worker_warnings,
)
from orchestrator.core import JobSpec
from orchestrator.core.spec import MAX_SPEC_BYTES


def read_spec_text(source: str) -> tuple[str, str]:
    """(text, name) from a path or ``-`` (stdin); unreadable input is bad input."""
    if source == "-":
        return sys.stdin.read(MAX_SPEC_BYTES + 1), "<stdin>"
    path = Path(source)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_SPEC_BYTES + 1)
    except FileNotFoundError as exc:
        raise BadInput(f"{source}: no such file") from exc
    except IsADirectoryError as exc:
        raise BadInput(f"{source}: is a directory, not a spec file") from exc
    except OSError as exc:
        raise BadInput(f"{source}: cannot read: {exc.strerror}") from exc
    try:
        return raw.decode("utf-8"), source
    except UnicodeDecodeError as exc:
        raise BadInput(f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc


def validate_spec(text: str, name: str) -> JobSpec:
    """Parse and validate locally (:func:`orchestrator.client.specs.parse_spec`, the client's
    own checks); every problem and warning is printed, then BadInput (exit 2)."""
    try:
        spec, warnings = parse_spec(text, name)
    except SpecProblems as exc:
        for line in [*exc.warnings, *exc.problems]:
            warn(line)
        raise BadInput(str(exc)) from exc
    for line in warnings:
        warn(line)
    return spec


@click.command()
@click.argument("spec_file", metavar="SPEC.json|-")
@click.option("--idempotency-key", metavar="K",
              help="Submitting the same key again names the same job (never a second one).")
@click.option("--wait", is_flag=True,
              help="Follow the job; exit 0 only if it FINISHED_SUCCESSFULLY, else 1.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0, min_open=True),
              help="With --wait: give up (exit 1) after this many seconds.")
@json_option
def submit(spec_file: str, idempotency_key: str | None, wait: bool, timeout_s: float | None,
           as_json: bool) -> None:
    """Validate a job spec locally and put it on the submissions stream; print the job id.

    An invalid spec prints every problem with its field path and submits nothing (exit 2).
    With --wait, a submission the daemon refuses (a reused job id or idempotency key with
    another spec: duplicate_job) prints the daemon's reason and exits 1.
    """
    text, name = read_spec_text(spec_file)
    spec = validate_spec(text, name)
    settings = cli_settings()

    async def main() -> int:
        async with Client(settings) as client:
            handle = await client.submit(spec, idempotency_key=idempotency_key)
            for line in handle.warnings:
                warn(line)
            key = handle.spec.idempotency_key
            if as_json:
                echo_json({"id": handle.id, "entry_id": handle.entry_id, "idempotency_key": key,
                           "submitted": True}, lines=wait)
            else:
                click.echo(handle.id)
                sys.stdout.flush()
            if not wait:
                return EXIT_OK
            mode: Mode = "json" if as_json else "plain"
            outcome = await follow_job(client, handle.id, mode=mode, wait_for_job_s=None,
                                       timeout_s=timeout_s, entry_id=handle.entry_id,
                                       spec=handle.spec)
            if outcome.message:
                warn(outcome.message)
            elif outcome.job is not None and not as_json:
                error = outcome.job.error
                detail = f": {error.code.value}: {error.message}" if error else ""
                warn(f"job {handle.id} {outcome.job.status.value}{detail}")
            return outcome.exit_code

    sys.exit(run_waiting(settings, main, wait))


__all__ = ["IDEMPOTENT_JOB_IDS", "job_id_for", "read_spec_text", "submit", "validate_spec",
           "worker_warnings"]
