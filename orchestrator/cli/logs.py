"""``orchestrator logs JOB [--participant P] [--follow] [--json]``: what participants printed.

A participant that ran in a child process of its worker (the default) has its stdout, stderr
and Python logging captured (:mod:`workers.isolation.logs`): tailed live to the job's capped
log stream in Redis while it runs, and stored whole in the object store
(``jobs/JOB/logs/PARTICIPANT.log``) when it ends. This command shows the stored log of each
participant that ended and the live lines of each that still runs; ``--follow`` keeps printing
new lines until the job ends (or, with ``--participant``, until that participant ends).

Text output is one line per captured line (prefixed ``[participant]`` when more than one is
shown); ``--json`` prints one JSON object per line: participant, run_id, at, stream, line.
Exit codes: 0 shown; 1 a server unreachable; 2 an unknown job or participant.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import click

from orchestrator.cli.common import EXIT_OK, BadInput, cli_settings
from orchestrator.cli.connect import keys_for, object_store_for, open_redis, open_store
from orchestrator.cli.output import echo_json, json_option, warn
from orchestrator.cli.running import run_interruptible
from orchestrator.errors import ObjectNotFoundError

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from orchestrator.core import Job
    from orchestrator.settings import Settings

FOLLOW_BLOCK_MS = 1000
"""Longest wait for new lines while following (then the job's status is read again)."""


@dataclass(frozen=True, slots=True)
class LogLine:
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
        async with open_store(settings) as store, open_redis(settings) as redis:
            job = await store.get(job_id)
            chosen = _chosen(job, participant)
            printer = Printer(as_json=as_json, prefixed=len(chosen) > 1)
            state = StreamState()
            stream = keys_for(settings).logs(job_id)
            entries: Any = await redis.xrange(stream, "-", "+")
            state.take(entries)
            shown = 0
            for pid in chosen:
                lines = await _shown(settings, job, pid, state)
                shown += len(lines)
                printer.print(lines)
            if not shown and not follow and not as_json:
                warn(f"no captured output for {participant or 'any participant of ' + job_id} "
                     "(yet): only participants that run in a child process have a log (not "
                     "light workloads such as noop, nor workers run with --isolation inline)")
            if follow:
                await Follower(redis, store, stream, job_id, chosen, printer, state).run(
                    single=participant is not None)
        return EXIT_OK

    sys.exit(run_interruptible(settings, main))


def _chosen(job: Job, participant: str | None) -> list[str]:
    ids = list(job.participants)
    if participant is None:
        return ids
    if participant not in job.participants:
        raise BadInput(f"job {job.id} has no participant {participant!r}; it has "
                       f"{', '.join(ids)}")
    return [participant]


async def _shown(settings: Settings, job: Job, participant: str,
                 state: StreamState) -> list[LogLine]:
    """The stored log of a participant that ended (when stored), else its live lines."""
    from workers.isolation.logs import log_key  # noqa: PLC0415 - the key lives with the writer

    ended = participant in state.ended or job.participants[participant].state.is_terminal
    if ended and state.ended.get(participant, None) != "":
        key = state.ended.get(participant) or log_key(job.id, participant)
        try:
            async with object_store_for(settings) as objects:
                text = (await objects.get_data(key)).decode(errors="replace")
        except ObjectNotFoundError:
            pass
        else:
            return parse_stored(participant, text)
    return [line for line in state.lines if line.participant == participant]


@dataclass
class Follower:
    """Follows the job's log stream for ``chosen`` participants."""

    redis: Redis
    store: Any
    stream: str
    job_id: str
    chosen: list[str]
    printer: Printer
    state: StreamState

    async def run(self, *, single: bool) -> None:
        """Print new lines until the job ends (``single``: until the one participant ended),
        then whatever arrived meanwhile."""
        done = set(self.state.ended) & set(self.chosen)
        while True:
            if single and self.chosen[0] in self.state.ended:
                return
            if not single and (await self.store.get(self.job_id)).status.is_terminal:
                self._print_new(await self.redis.xread({self.stream: self.state.last_id},
                                                       count=10_000), done)
                return
            reply: Any = await self.redis.xread({self.stream: self.state.last_id}, count=1000,
                                                block=FOLLOW_BLOCK_MS)
            self._print_new(reply, done)
            await anyio.lowlevel.checkpoint()

    def _print_new(self, reply: Any, done: set[str]) -> None:
        for _stream, entries in reply or []:
            new = self.state.take(entries)
            self.printer.print(line for line in new if line.participant in self.chosen
                               and line.participant not in done)
