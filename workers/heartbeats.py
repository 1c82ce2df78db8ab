"""One heartbeat timer for the whole worker, however many participants it runs.

Theory of operation: :class:`HeartbeatSchedule` is pure bookkeeping (time is a parameter): a
heap of when each participant's next heartbeat is due, each with its own interval (the
``heartbeat_interval_s`` of its ``participant.start``). :class:`Heartbeats` is the one task
that sleeps until the earliest due time, then calls ``heartbeat()`` on every participant whose
time has come, all in one wake-up. A participant's first heartbeat is due one interval after it
was added, each next one an interval after the one before was queued: a late wake-up delays
the next beat as much, so two heartbeats of one participant are never closer than its
interval and a stalled loop causes no burst (participants that were late together stay
together: one wake-up for all of them). Adding a participant wakes the task only when its first
beat is due before the task would wake anyway; removing one never does, and the schedule lets
go of a removed participant at once (a worker that ends thousands of short runs per heartbeat
interval does not keep them alive until their next beat would have been due).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable
from typing import Generic, Protocol, TypeVar

import anyio
from anyio.abc import TaskStatus
from structlog.typing import FilteringBoundLogger

from orchestrator.logs import get_logger

MIN_INTERVAL_S = 0.01
"""Shorter heartbeat intervals are raised to this."""

K = TypeVar("K", bound=Hashable)

COMPACT_AT = 64
"""Dropped heap entries (beyond twice the live ones) that make the schedule rebuild its heap."""


class HeartbeatSchedule(Generic[K]):
    """When each participant's next heartbeat is due; no clock inside.

    The heap holds ``(due, tag)`` pairs only; the key of a live tag is in ``_keys``. Removing a
    key forgets its tag at once, so the schedule keeps no reference to a removed participant
    (its heap pair is dropped when it comes up, or when dropped pairs outnumber the live ones:
    the heap is then rebuilt, as asyncio does with cancelled timers)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int]] = []
        self._keys: dict[int, K] = {}  # live tag -> its key
        self._entries: dict[K, tuple[int, float]] = {}  # key -> (its live tag, interval)
        self._counter = itertools.count()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def add(self, key: K, interval_s: float, now: float) -> float:
        """Schedule ``key`` every ``interval_s`` from ``now``; returns its first due time."""
        interval_s = max(interval_s, MIN_INTERVAL_S)
        return self._push(key, now + interval_s, interval_s)

    def remove(self, key: K) -> None:
        """Stop scheduling ``key`` (nothing happens if it is not scheduled)."""
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        del self._keys[entry[0]]
        if len(self._heap) > COMPACT_AT + 2 * len(self._keys):
            self._heap = [pair for pair in self._heap if pair[1] in self._keys]
            heapq.heapify(self._heap)

    def next_due(self) -> float | None:
        """The earliest due time of a scheduled key; ``None`` when nothing is scheduled."""
        heap = self._heap
        while heap:
            due, tag = heap[0]
            if tag in self._keys:
                return due
            heapq.heappop(heap)  # removed, or rescheduled since
        return None

    def pop_due(self, now: float) -> list[K]:
        """Every key due at ``now``, each rescheduled an interval after ``now``."""
        due_keys: list[K] = []
        while (due := self.next_due()) is not None and due <= now:
            _, tag = heapq.heappop(self._heap)
            key = self._keys.pop(tag)
            self._push(key, now + self._entries[key][1], self._entries[key][1])
            due_keys.append(key)
        return due_keys

    def _push(self, key: K, due: float, interval_s: float) -> float:
        tag = next(self._counter)
        previous = self._entries.get(key)
        if previous is not None:  # (added again: its earlier pair is dropped)
            self._keys.pop(previous[0], None)
        self._entries[key] = (tag, interval_s)
        self._keys[tag] = key
        heapq.heappush(self._heap, (due, tag))
        return due


class Beating(Protocol):
    """A participant as the heartbeat timer sees it (hashable: by identity is fine)."""

    def __hash__(self) -> int: ...

    def heartbeat(self) -> None:
        """Queue one heartbeat event (it must not block)."""
        ...


class Heartbeats:
    """The worker's heartbeat task and the participants it beats for."""

    def __init__(self, log: FilteringBoundLogger | None = None) -> None:
        self._schedule: HeartbeatSchedule[Beating] = HeartbeatSchedule()
        self._log: FilteringBoundLogger = log or get_logger("workers.heartbeats")
        self._changed = anyio.Event()
        self._wake_at = float("inf")

    def __len__(self) -> int:
        return len(self._schedule)

    def add(self, participant: Beating, interval_s: float) -> None:
        """Beat for ``participant`` every ``interval_s``, the first time one interval from now."""
        due = self._schedule.add(participant, interval_s, anyio.current_time())
        if due < self._wake_at:
            self._changed.set()

    def remove(self, participant: Beating) -> None:
        """No more heartbeats for ``participant``, from now on."""
        self._schedule.remove(participant)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Beat until cancelled (run it in the agent's task group)."""
        task_status.started()
        schedule = self._schedule
        while True:
            next_at = schedule.next_due()
            now = anyio.current_time()
            if next_at is not None and next_at <= now:
                for participant in schedule.pop_due(now):
                    self._beat(participant)
                continue
            self._changed = anyio.Event()
            self._wake_at = float("inf") if next_at is None else next_at
            with anyio.move_on_after(None if next_at is None else next_at - now):
                await self._changed.wait()

    def _beat(self, participant: Beating) -> None:
        try:
            participant.heartbeat()
        except Exception:  # a bug of ours: one participant must not stop the others' beats
            self._log.exception("cannot queue a heartbeat")
