"""Job specs as a submitter gives them: checked locally with the daemon's own limits before
anything is sent, named, and compared with the workers that are registered now. Pure.

``orchestrator submit`` and :meth:`orchestrator.client.Client.submit` share these checks, so a
spec refused by one is refused by the other with the same words.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from orchestrator.core import JobSpec, Role, validation_problems
from orchestrator.core.jsonshape import JsonShapeError
from orchestrator.core.spec import MAX_SPEC_BYTES, load_spec_json
from orchestrator.core.suitability import unsuitable
from orchestrator.errors import InvalidSpecError

IDEMPOTENT_JOB_IDS = uuid.UUID("9c7f0b52-51f6-4a38-8f43-2d1f0c6f7e11")
"""The namespace of job ids derived from idempotency keys (uuid5): the CLI's and the client's
are the same, so either names the same job for the same key."""

SpecSource = JobSpec | Mapping[str, Any] | str | bytes
"""What ``submit`` takes: a ``JobSpec``, its dict, or its JSON text."""


class SpecProblems(InvalidSpecError):
    """A spec that failed the local checks: ``problems`` lists each (with its field path),
    ``warnings`` what was accepted but deprecated; ``str()`` is the one-line summary."""

    def __init__(self, summary: str, problems: list[str] | None = None,
                 warnings: list[str] | None = None) -> None:
        super().__init__(summary)
        self.problems = problems or []
        self.warnings = warnings or []


def parse_spec(source: SpecSource, name: str = "spec") -> tuple[JobSpec, list[str]]:
    """(the validated spec, its warnings); every problem raises ``SpecProblems``."""
    if isinstance(source, JobSpec):
        return source, []
    if isinstance(source, bytes):
        try:
            source = source.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SpecProblems(f"{name}: not UTF-8 text ({exc.reason} at byte "
                               f"{exc.start})") from exc
    if isinstance(source, str):
        data = _load_text(source, name)
    else:
        data = dict(source)
        _check_size(json.dumps(data, default=str), name)
    warnings: list[str] = []
    if data.get("server_config"):
        warnings.append(f"{name}: server_config is deprecated: give the server's configuration "
                        "as server.config (it is moved there)")
    try:
        return JobSpec.model_validate(data), warnings
    except ValidationError as exc:
        problems = [f"{name}: {p}" for p in validation_problems(exc)]
        noun = "problem" if len(problems) == 1 else "problems"
        raise SpecProblems(f"{name}: invalid job spec ({len(problems)} {noun}); nothing "
                           "submitted", problems, warnings) from exc


def _check_size(text: str, name: str) -> None:
    if len(text.encode()) > MAX_SPEC_BYTES:
        raise SpecProblems(f"{name}: spec is larger than the {MAX_SPEC_BYTES} byte limit")


def _load_text(text: str, name: str) -> dict[str, Any]:
    _check_size(text, name)
    try:
        data = load_spec_json(text)
    except JsonShapeError as exc:  # the daemon's limits: nesting, key count, duplicate keys
        raise SpecProblems(f"{name}: {exc.reason}") from exc
    except json.JSONDecodeError as exc:
        raise SpecProblems(f"{name}: not valid JSON: {exc.msg} (line {exc.lineno}, column "
                           f"{exc.colno})") from exc
    if not isinstance(data, dict):
        raise SpecProblems(f"{name}: a job spec is a JSON object, got {type(data).__name__}")
    return data


def job_id_for(spec: JobSpec, idempotency_key: str | None) -> str:
    """The spec's own id; else one derived from the idempotency key (a resubmission names the
    same job); else a fresh uuid4."""
    if spec.job_id is not None:
        return spec.job_id
    if idempotency_key is not None:
        return uuid.uuid5(IDEMPOTENT_JOB_IDS, idempotency_key).hex
    return uuid.uuid4().hex


def named(spec: JobSpec, idempotency_key: str | None) -> JobSpec:
    """``spec`` with its job id and idempotency key filled in, as it is submitted."""
    key = idempotency_key or spec.idempotency_key
    update: dict[str, Any] = {"job_id": job_id_for(spec, key)}
    if key is not None:
        update["idempotency_key"] = key
    return spec.model_copy(update=update)


def same_request(a: JobSpec, b: JobSpec) -> bool:
    """Equal specs, ignoring a job id only one names (the daemon's duplicate test)."""
    return a.model_copy(update={"job_id": None}) == b.model_copy(update={"job_id": None})


def worker_warnings(spec: JobSpec, alive: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """What the live workers' registrations say against ``spec``, one line per worker: not
    registered (the job waits for it until its start deadline) or unable to run its
    participant (the daemon refuses the job at once)."""
    lines: dict[str, str] = {}
    for pid in spec.participant_ids():
        worker = spec.participant_spec(pid).worker
        role = Role.SERVER if pid == "server" else Role.CLIENT
        info = alive.get(worker)
        problem = unsuitable(pid, role, worker, spec.workload,
                             None if info is None else dict(info))
        if problem is None or worker in lines:
            continue
        if problem.permanent:
            lines[worker] = (f"warning: {problem.message}: the daemon will refuse the job "
                             "(cannot_schedule)")
        else:
            lines[worker] = (f"warning: {problem.message} now: the job waits for it for at "
                             f"most its start timeout ({spec.timeouts.start_s:g}s)")
    return list(lines.values())
