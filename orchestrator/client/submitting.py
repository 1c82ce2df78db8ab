"""What the client puts on the bus, prepared: the spec as it would be submitted (read from a
file or a string, validated, named), the advice the live workers' registrations give about
it, and who asks for a cancel.
"""

from __future__ import annotations

import getpass
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.client.specs import (
    SpecProblems,
    SpecSource,
    named,
    parse_spec,
    worker_warnings,
)
from orchestrator.core import JobSpec
from orchestrator.errors import OrchestratorError

if TYPE_CHECKING:
    from orchestrator.bus import Bus


def requested_by(via: str = "client") -> str:
    """Who asks, for the cancel request's record: ``user@host (client)`` (``(cli)`` from the
    command line)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()} ({via})"


def prepared(spec: SpecSource | Path, *, idempotency_key: str | None = None,
             name: str | None = None) -> tuple[JobSpec, list[str]]:
    """The spec as it would be submitted (validated, its job id and key filled in) and its
    warnings; ``SpecProblems`` lists every problem. A ``Path``, or a string that is not a
    JSON object (``"examples/noop.json"``), names a file to read."""
    if isinstance(spec, str) and not spec.lstrip().startswith(("{", "[")):
        spec = Path(spec)
    if isinstance(spec, Path):
        name = name or str(spec)
        try:
            spec = spec.read_bytes()
        except OSError as exc:
            raise SpecProblems(f"{name}: cannot read: {exc.strerror}") from exc
    parsed, warnings = parse_spec(spec, name or "spec")
    return named(parsed, idempotency_key), warnings


async def worker_advice(bus: Bus, spec: JobSpec) -> list[str]:
    """Warnings about the spec's workers that are not registered now or cannot run their
    participant (none when the registrations cannot be read: the daemon decides anyway)."""
    names = sorted({spec.participant_spec(pid).worker for pid in spec.participant_ids()})
    try:
        alive = await bus.alive_workers(names)
    except OrchestratorError:  # the check is advice: the daemon decides anyway
        return []
    return worker_warnings(spec, alive)


__all__ = ["prepared", "requested_by", "worker_advice"]
