"""Event application: event shards + control stream → ``decide`` per job → one commit.

One batch: parse every entry (an unparseable one is rejected alone: before its JSON is parsed,
an entry larger than ``MAX_EVENT_BYTES``, nested deeper or holding more keys than the spec
limits, or with a duplicate key is refused with that reason), apply the events with
one load, one records upsert and one bulk CAS (``apply_events``), then one commit with the
commands, the watcher updates and the XACK. Transient store failures are retried while the
batch is held; nothing is acknowledged before the write. Should the batch as a whole fail for
any other reason, its events are applied one by one, so a poison event is rejected alone.

Authentication (see ``orchestrator.core.auth``): the event streams carry participant events
only. A daemon-only type (``job.dispatched``, ``deadline.expired``, ``job.unschedulable``) or a
``cancel.requested`` (it comes from the control stream) found there is a forgery: rejected
(``forbidden_event``, dead-lettered). A participant event reaches ``decide`` only when its
MAC verifies against the run secret of the participant as stored in the job (``check``,
applied by ``apply_events`` to each job as loaded); else its outcome is ``refused: no MAC``,
``refused: bad MAC`` or ``refused: no run``, and it is acknowledged. Every such refusal is
recorded in the store (``record_refused_events``: the reason, the stream entry and what the
event claimed to be), counted (``Stats.events_refused``) and logged, before the commit.

Checkpoints (``orchestrator.daemon.verify``): with a ``verify`` step, the object of every
``checkpoint.saved`` is looked at before ``apply_events``; one missing or differing from the
announcement is refused the same way (after the MAC check); one the store cannot answer for
now is left unacknowledged and parked, to be handled again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from pydantic import ValidationError

from orchestrator.bus import Bus, Entry, StreamConsumer
from orchestrator.core import (
    EVENT_ADAPTER,
    CancelRequested,
    DeadlineExpired,
    Event,
    JobDispatched,
    JobUnschedulable,
)
from orchestrator.core.events import MAX_EVENT_BYTES
from orchestrator.core.jsonshape import JsonShapeError, check_duplicates, check_shape
from orchestrator.core.spec import MAX_JSON_DEPTH, MAX_JSON_ITEMS
from orchestrator.daemon.apply import Applied, Check, apply_events, observe
from orchestrator.daemon.commit import Commit
from orchestrator.daemon.intake import summarize
from orchestrator.daemon.parking import Parked
from orchestrator.daemon.rejections import Refusal, reject
from orchestrator.daemon.retry import Retrier
from orchestrator.daemon.stats import Stats, utcnow
from orchestrator.daemon.verify import Verify
from orchestrator.logs import get_logger
from orchestrator.store import JobStore, RefusedEvent

log = get_logger("orchestrator.daemon.events")

#: Event types only the daemon itself may produce; on the bus they are forgeries.
INTERNAL_EVENTS = (JobDispatched, DeadlineExpired, JobUnschedulable)


def event_shape_problem(raw: str) -> tuple[str, str] | None:
    """(kind, reason) when an event's JSON is oversize, too deep, too wide or has a duplicate
    key — found before it is parsed (pure)."""
    size = len(raw.encode("utf-8", "replace"))
    if size > MAX_EVENT_BYTES:
        return "oversize", f"event is {size} bytes; the limit is {MAX_EVENT_BYTES}"
    try:
        check_shape(raw, what="event", max_depth=MAX_JSON_DEPTH, max_items=MAX_JSON_ITEMS)
        check_duplicates(raw, what="event")
    except JsonShapeError as exc:
        return exc.kind, exc.reason
    except ValueError:
        return None  # not JSON at all: validation says so
    return None


def parse_event(entry: Entry, control: str) -> Event | Refusal:
    """The event an entry carries, or why it cannot be one (pure)."""
    fields = entry.fields
    if entry.stream == control:
        kind = fields.get("type")
        if kind != "cancel":
            return Refusal(entry, "invalid_control", f"unknown control type {kind!r}",
                           fields.get("job_id"), str(fields))
        try:
            return CancelRequested(event_id=f"cancel.{entry.id}", job_id=fields.get("job_id", ""),
                                   reason=fields.get("reason") or "cancelled by user",
                                   requested_by=fields.get("requested_by"))
        except ValidationError as exc:
            return Refusal(entry, "invalid_control", f"invalid cancel request: {summarize(exc)}",
                           None, str(fields))
    raw = fields.get("event")
    if raw is None:
        return Refusal(entry, "missing_event",
                       f"entry has no 'event' field (fields: {sorted(fields)})", None, str(fields))
    problem = event_shape_problem(raw)
    if problem is not None:
        kind, reason = problem
        return Refusal(entry, kind, reason, None, raw[:2048])
    try:
        event = EVENT_ADAPTER.validate_json(raw)
    except ValidationError as exc:
        return Refusal(entry, "invalid_event", f"invalid event: {summarize(exc)}", None, raw)
    if isinstance(event, INTERNAL_EVENTS):
        return Refusal(entry, "forbidden_event", f"{event.type} events are produced by the "
                       "daemon only, not accepted from the bus", event.job_id, raw, event)
    if isinstance(event, CancelRequested):
        return Refusal(entry, "forbidden_event", "cancel.requested events come from the "
                       "control stream only, not from the event streams", event.job_id, raw,
                       event)
    return event


def refused_row(entry: Entry, event: Event, reason: str, at: datetime) -> RefusedEvent:
    """The record of one refused event: the reason, where it came from, what it claimed."""
    participant = getattr(event, "participant", None)
    worker = getattr(event, "worker", None)
    return RefusedEvent(at=at, source=entry.stream[:256], entry_id=entry.id[:256],
                        reason=reason[:256], event_type=event.type, event_id=event.event_id,
                        job_id=event.job_id, participant=participant, worker=worker)


@dataclass(slots=True)
class EventHandler:
    """Handles the batches of the events consumer."""

    store: JobStore
    bus: Bus
    consumer: StreamConsumer
    retry: Retrier
    stats: Stats
    #: Called when a worker announces itself on the control stream (admission may proceed).
    worker_registered: Callable[[], None]
    #: Authenticates each event against its job before ``decide`` (``RunAuth.check``).
    check: Check | None = None
    #: Checks the objects of ``checkpoint.saved`` events (``daemon.verify``); None: off.
    verify: Verify | None = None
    #: Where entries whose checkpoint could not be verified yet wait to be handled again.
    parked: Parked | None = None

    async def __call__(self, entries: list[Entry]) -> Commit:
        control = self.bus.keys.control
        acks: list[Entry] = []  # wake-ups: acknowledged, nothing to apply
        events: list[Event] = []
        carriers: list[Entry] = []  # the entry of each event, in step with ``events``
        refusals: list[Refusal] = []
        for entry in entries:
            fields = entry.fields
            if not fields:
                refusals.append(Refusal(entry, "deleted_entry",
                                        "entry was deleted from the stream before it was applied"))
            elif entry.stream == control and fields.get("type") == "worker_registered":
                self.worker_registered()
                acks.append(entry)
            else:
                try:
                    parsed = parse_event(entry, control)
                except Exception as exc:  # one entry that breaks parsing is rejected alone
                    parsed = Refusal(entry, "unprocessable", "parsing the entry failed: "
                                     f"{type(exc).__name__}: {exc}", None, str(fields)[:2048])
                if isinstance(parsed, Refusal):
                    refusals.append(parsed)
                else:
                    events.append(parsed)
                    carriers.append(entry)
        now = utcnow()
        # Forgeries of the daemon's own types: recorded as refused events too (the rejection
        # record and the dead letter carry the full reason).
        await self._record_refused([refused_row(r.entry, r.event, f"refused: {r.kind}", now)
                                    for r in refusals if r.event is not None])
        await reject(refusals, store=self.store, consumer=self.consumer, retry=self.retry,
                     stats=self.stats)
        self.stats.events_seen += len(events)
        commit = Commit()
        check = self.check
        if events and self.verify is not None:  # checkpoint objects seen, before ``decide``
            verdicts = await self.verify(events)
            check = verdicts.check(self.check)
            if verdicts.deferred:  # left unacknowledged, parked: handled again soon
                pairs = list(zip(events, carriers, strict=True))
                if self.parked is not None:
                    self.parked.park([c for e, c in pairs if id(e) in verdicts.deferred])
                kept = [(e, c) for e, c in pairs if id(e) not in verdicts.deferred]
                events, carriers = [e for e, _ in kept], [c for _, c in kept]
        if events:
            try:
                applied = await self.retry(
                    lambda: apply_events(self.store, events, utcnow(), check=check),
                    "apply events")
            except Exception as exc:  # a bug or a corrupt document: isolate the poison event
                log.exception("batch failed; applying its events one by one", error=str(exc))
                return await self._one_by_one(events, carriers, acks, check)
            await self._record(commit, applied, events, carriers)
        commit.ack(self.consumer, acks + carriers)
        return commit

    async def _record(self, commit: Commit, applied: Applied, events: Sequence[Event],
                      carriers: Sequence[Entry]) -> None:
        if applied.refused:
            entry_of = {id(e): entry for e, entry in zip(events, carriers, strict=True)}
            now = utcnow()
            await self._record_refused([refused_row(entry_of[id(e)], e, reason, now)
                                        for e, reason in applied.refused])
        observe(applied, self.stats)
        commit.add(self.bus, applied.commands, applied.decisions)

    async def _record_refused(self, rows: list[RefusedEvent]) -> None:
        """Record, count and log refused events (one store write), before the commit."""
        if not rows:
            return
        await self.retry(lambda: self.store.record_refused_events(rows),
                         "record refused events")
        self.stats.note_refused(row.reason for row in rows)
        for row in rows:
            log.warning("event refused", reason=row.reason, event_type=row.event_type,
                        job_id=row.job_id, participant=row.participant, worker=row.worker,
                        stream=row.source, entry_id=row.entry_id)

    async def _one_by_one(self, events: list[Event], carriers: list[Entry],
                          acks: list[Entry], check: Check | None) -> Commit:
        commit = Commit()
        for event, entry in zip(events, carriers, strict=True):
            try:
                applied = await self.retry(partial(apply_events, self.store, [event], utcnow(),
                                                   check=check), "apply event")
            except Exception as exc:
                await reject([Refusal(entry, "apply_failed", f"applying {event.type} failed: "
                                      f"{type(exc).__name__}: {exc}", event.job_id,
                                      entry.fields.get("event", ""))],
                             store=self.store, consumer=self.consumer, retry=self.retry,
                             stats=self.stats)
                continue
            await self._record(commit, applied, [event], [entry])
            acks.append(entry)
        commit.ack(self.consumer, acks)
        return commit
