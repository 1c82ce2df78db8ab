"""A job's captured participant output: the stored log of each participant that ended, the
live lines of each that still runs, and following new lines until the job ends.

A participant that ran in a child process of its worker (the default) has its stdout, stderr
and Python logging captured (:mod:`workers.isolation.logs`): tailed live to the job's capped
log stream in Redis while it runs, and stored whole in the object store
(``jobs/JOB/logs/PARTICIPANT.log``) when it ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio.lowlevel

from orchestrator.errors import ObjectNotFoundError, PermanentError

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from orchestrator.core import Job
    from orchestrator.storage import ObjectStore
    from orchestrator.store import JobStore

FOLLOW_BLOCK_MS = 1000
"""Longest wait for new lines while following (then the job's status is read again)."""


@dataclass(frozen=True, slots=True)
class LogLine:
    """One captured line: who printed it, when, on which stream (stdout, stderr, log…)."""

    participant: str
    at: str
    stream: str
    line: str
    run_id: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"participant": self.participant, "run_id": self.run_id, "at": self.at,
                "stream": self.stream, "line": self.line}


@dataclass
class StreamState:
    """What the job's log stream said so far: lines, ended participants, the last entry id."""

    lines: list[LogLine] = field(default_factory=list)
    ended: dict[str, str] = field(default_factory=dict)  # participant -> stored key ("": none)
    last_id: str = "0-0"

    def take(self, entries: Iterable[tuple[Any, dict[Any, Any]]]) -> list[LogLine]:
        """Add stream entries; returns their lines."""
        new: list[LogLine] = []
        for entry_id, raw in entries:
            self.last_id = _text(entry_id)
            fields = {_text(k): _text(v) for k, v in raw.items()}
            participant = fields.get("p", "?")
            if "end" in fields:
                self.ended[participant] = fields.get("key", "")
                continue
            line = LogLine(participant, fields.get("t", ""), fields.get("s", ""),
                           fields.get("l", ""), fields.get("r", ""))
            self.lines.append(line)
            new.append(line)
        return new


def parse_stored(participant: str, text: str) -> list[LogLine]:
    """The lines of a stored log (``<time> <stream> <text>`` each)."""
    lines = []
    for raw in text.splitlines():
        at, stream, line = ([*raw.split(" ", 2), "", ""])[:3]
        lines.append(LogLine(participant, at, stream, line))
    return lines


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def chosen_participants(job: Job, participant: str | None) -> list[str]:
    """Every participant of ``job``, or the one named (``PermanentError`` if it has none)."""
    ids = list(job.participants)
    if participant is None:
        return ids
    if participant not in job.participants:
        raise PermanentError(f"job {job.id} has no participant {participant!r}; it has "
                             f"{', '.join(ids)}")
    return [participant]


async def read_state(redis: Redis, stream: str) -> StreamState:
    """Everything the job's log stream holds now."""
    state = StreamState()
    entries: Any = await redis.xrange(stream, "-", "+")
    state.take(entries)
    return state


async def participant_lines(objects: ObjectStore, job: Job, participant: str,
                            state: StreamState) -> list[LogLine]:
    """The stored log of a participant that ended (when stored), else its live lines."""
    from workers.isolation.logs import log_key  # noqa: PLC0415 - the key lives with the writer

    ended = participant in state.ended or job.participants[participant].state.is_terminal
    if ended and state.ended.get(participant, None) != "":
        key = state.ended.get(participant) or log_key(job.id, participant)
        try:
            text = (await objects.get_data(key)).decode(errors="replace")
        except ObjectNotFoundError:
            pass
        else:
            return parse_stored(participant, text)
    return [line for line in state.lines if line.participant == participant]


async def follow_lines(redis: Redis, store: JobStore, stream: str, job_id: str, *,
                       chosen: list[str], state: StreamState, single: bool
                       ) -> AsyncIterator[LogLine]:
    """New lines of ``chosen`` participants until the job ends (``single``: until the one
    participant ended), then whatever arrived meanwhile."""
    done = set(state.ended) & set(chosen)

    def wanted(reply: Any) -> list[LogLine]:
        found: list[LogLine] = []
        for _stream, entries in reply or []:
            found.extend(line for line in state.take(entries)
                         if line.participant in chosen and line.participant not in done)
        return found

    while True:
        if single and chosen[0] in state.ended:
            return
        if not single and (await store.get(job_id)).status.is_terminal:
            for line in wanted(await redis.xread({stream: state.last_id}, count=10_000)):
                yield line
            return
        reply: Any = await redis.xread({stream: state.last_id}, count=1000,
                                       block=FOLLOW_BLOCK_MS)
        for line in wanted(reply):
            yield line
        await anyio.lowlevel.checkpoint()
