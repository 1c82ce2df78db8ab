"""``orchestrator submit SPEC.json|-``: validate a job spec locally and put it on the submissions
stream; with ``--wait``, follow the job.

Before it submits, it reads the registrations of the spec's workers and warns (stderr) about
each that is not registered or cannot run its participant (the other role, the workload not
offered); it submits anyway, since workers may come later.

Exit codes: 0 submitted (with ``--wait``: the job FINISHED_SUCCESSFULLY); 1 a server
unreachable, or with ``--wait`` a job that did not succeed; 2 an unreadable or invalid spec,
invalid settings.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from pydantic import ValidationError

from orchestrator.cli.common import EXIT_OK, BadInput, cli_settings
from orchestrator.cli.connect import bus_for, open_redis, open_store
from orchestrator.cli.output import echo_json, json_option, warn
from orchestrator.cli.running import run_waiting
from orchestrator.cli.watch import Mode, follow_job
from orchestrator.core import JobSpec, Role, validation_problems
from orchestrator.core.jsonshape import JsonShapeError
from orchestrator.core.spec import MAX_SPEC_BYTES, load_spec_json
from orchestrator.core.suitability import unsuitable
from orchestrator.errors import OrchestratorError

if TYPE_CHECKING:
    from orchestrator.bus import Bus

IDEMPOTENT_JOB_IDS = uuid.UUID("9c7f0b52-51f6-4a38-8f43-2d1f0c6f7e11")


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
    """Parse and validate locally; every problem is printed, then BadInput (exit 2)."""
    if len(text.encode()) > MAX_SPEC_BYTES:
        raise BadInput(f"{name}: spec is larger than the {MAX_SPEC_BYTES} byte limit")
    try:
        data = load_spec_json(text)
    except JsonShapeError as exc:  # the daemon's limits: nesting, key count, duplicate keys
        raise BadInput(f"{name}: {exc.reason}") from exc
    except json.JSONDecodeError as exc:
        raise BadInput(f"{name}: not valid JSON: {exc.msg} (line {exc.lineno}, column "
                       f"{exc.colno})") from exc
    if not isinstance(data, dict):
        raise BadInput(f"{name}: a job spec is a JSON object, got {type(data).__name__}")
    if data.get("server_config"):
        warn(f"{name}: server_config is deprecated: give the server's configuration as "
             "server.config (it is moved there)")
    try:
        return JobSpec.model_validate(data)
    except ValidationError as exc:
        problems = validation_problems(exc)
        for problem in problems:
            warn(f"{name}: {problem}")
        noun = "problem" if len(problems) == 1 else "problems"
        raise BadInput(f"{name}: invalid job spec ({len(problems)} {noun}); nothing "
                       "submitted") from exc


def job_id_for(spec: JobSpec, idempotency_key: str | None) -> str:
    """The spec's own id; else one derived from the idempotency key (a resubmission names the
    same job); else a fresh uuid4."""
    if spec.job_id is not None:
        return spec.job_id
    if idempotency_key is not None:
        return uuid.uuid5(IDEMPOTENT_JOB_IDS, idempotency_key).hex
    return uuid.uuid4().hex


def worker_warnings(spec: JobSpec, alive: dict[str, dict[str, Any]]) -> list[str]:
    """What the live workers' registrations say against ``spec``, one line per worker: not
    registered (the job waits for it until its start deadline) or unable to run its
    participant (the daemon refuses the job at once). Pure."""
    lines: dict[str, str] = {}
    for pid in spec.participant_ids():
        worker = spec.participant_spec(pid).worker
        role = Role.SERVER if pid == "server" else Role.CLIENT
        problem = unsuitable(pid, role, worker, spec.workload, alive.get(worker))
        if problem is None or worker in lines:
            continue
        if problem.permanent:
            lines[worker] = (f"warning: {problem.message}: the daemon will refuse the job "
                             "(cannot_schedule)")
        else:
            lines[worker] = (f"warning: {problem.message} now: the job waits for it for at "
                             f"most its start timeout ({spec.timeouts.start_s:g}s)")
    return list(lines.values())


async def warn_about_workers(bus: Bus, spec: JobSpec) -> None:
    """Warn (stderr) about the spec's workers as they are registered now; a failed read only
    skips the check (the daemon decides anyway)."""
    names = sorted({spec.participant_spec(pid).worker for pid in spec.participant_ids()})
    try:
        alive = await bus.alive_workers(names)
    except OrchestratorError:
        return
    for line in worker_warnings(spec, alive):
        warn(line)


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
    """
    text, name = read_spec_text(spec_file)
    spec = validate_spec(text, name)
    settings = cli_settings()
    key = idempotency_key or spec.idempotency_key
    job_id = job_id_for(spec, key)
    update: dict[str, Any] = {"job_id": job_id}
    if key is not None:
        update["idempotency_key"] = key
    spec = spec.model_copy(update=update)

    async def main() -> int:
        async with open_redis(settings) as redis:
            bus = bus_for(redis, settings)
            await warn_about_workers(bus, spec)
            entry_id = await bus.submit(spec.model_dump_json(exclude_none=True),
                                        idempotency_key=key)
            if as_json:
                echo_json({"id": job_id, "entry_id": entry_id, "idempotency_key": key,
                           "submitted": True}, lines=wait)
            else:
                click.echo(job_id)
                sys.stdout.flush()
            if not wait:
                return EXIT_OK
            async with open_store(settings) as store:
                mode: Mode = "json" if as_json else "plain"
                outcome = await follow_job(store, redis, settings, job_id, mode=mode,
                                           wait_for_job_s=None, timeout_s=timeout_s)
            if outcome.message:
                warn(outcome.message)
            elif outcome.job is not None and not as_json:
                error = outcome.job.error
                detail = f": {error.code.value}: {error.message}" if error else ""
                warn(f"job {job_id} {outcome.job.status.value}{detail}")
            return outcome.exit_code

    sys.exit(run_waiting(settings, main, wait))
