"""Can a worker run a participant? Read from the registration info the worker publishes (pure).

A worker's registration (``Bus.alive_workers``) carries its ``role`` and the ``workloads`` it
offers (name -> version and config schemas, ``workers.registry.offered_workloads``). A
participant's worker is *suitable* when it is registered, has the participant's role and
offers the job's workload. A registration without a ``workloads`` entry (an agent older than
workload plugins, or a scripted stand-in) is taken to offer every workload: its own refusal
(``participant.failed``) then names the problem.

Admission, the reaper (the reason of a start deadline) and ``orchestrator submit`` (its
warnings) read the same answers, so all three name a problem with the same words.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.core.status import Role

__all__ = ["ROLE_OK", "Unsuitable", "describe_problems", "unsuitable"]

#: The registered roles that may run a participant of each role.
ROLE_OK = {Role.SERVER: {None, "server", "any"}, Role.CLIENT: {None, "client", "any"}}

#: At most this many offered workloads are listed in a "does not offer" message.
_LISTED = 8
#: At most this many problems are named in one reason (the rest are counted).
_NAMED = 5


@dataclass(frozen=True, slots=True)
class Unsuitable:
    """Why ``worker`` cannot run ``participant`` now. ``permanent``: the worker is alive but
    cannot run it as registered (waiting would not help: admission fails the job at once);
    else it is not registered (it may come: the job waits)."""

    participant: str
    worker: str
    message: str
    permanent: bool


def unsuitable(participant: str, role: Role, worker: str, workload: str,
               info: Mapping[str, Any] | None) -> Unsuitable | None:
    """Why ``worker`` (registration ``info``, None: not alive) cannot run ``participant`` of
    ``role`` with ``workload``; None when it can."""
    if info is None:
        return Unsuitable(participant, worker, f"worker {worker!r} is not registered", False)
    registered = info.get("role")
    if registered not in ROLE_OK[role]:
        return Unsuitable(participant, worker, (
            f"worker {worker} is registered as a {registered} worker and cannot run "
            f"{participant}, whose role is {role.value}"), True)
    offers = info.get("workloads")
    if isinstance(offers, Mapping) and workload not in offers:
        names = sorted(str(n) for n in offers)
        listed = ", ".join(names[:_LISTED]) + (", …" if len(names) > _LISTED else "")
        return Unsuitable(participant, worker, (
            f"worker {worker!r} does not offer workload {workload!r} "
            f"(it offers: {listed or 'none'})"), True)
    return None


def describe_problems(problems: Iterable[Unsuitable]) -> str:
    """The problems on one line, each named once, in order; past five, the rest counted (a
    job of 1000 clients must still fit in an event's message)."""
    seen = list(dict.fromkeys(problem.message for problem in problems))
    more = len(seen) - _NAMED
    return "; ".join(seen[:_NAMED]) + (f"; and {more} more" if more > 0 else "")
