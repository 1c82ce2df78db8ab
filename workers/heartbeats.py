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
beat is due before the task would wake anyway; removing one never does (its heap entry is
dropped when it comes up).
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


class HeartbeatSchedule(Generic[K]):
    """When each participant's next heartbeat is due; no clock inside."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, K]] = []
        self._entries: dict[K, tuple[int, float]] = {}  # key -> (its live heap entry, interval)
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
        self._entries.pop(key, None)

    def next_due(self) -> float | None:
        """The earliest due time of a scheduled key; ``None`` when nothing is scheduled."""
        heap = self._heap
        while heap:
            due, tag, key = heap[0]
            entry = self._entries.get(key)
            if entry is not None and entry[0] == tag:
                return due
            heapq.heappop(heap)  # removed, or rescheduled since
        return None

    def pop_due(self, now: float) -> list[K]:
        """Every key due at ``now``, each rescheduled an interval after ``now``."""
        due_keys: list[K] = []
        while (due := self.next_due()) is not None and due <= now:
            _, _, key = heapq.heappop(self._heap)
            interval_s = self._entries[key][1]
            self._push(key, now + interval_s, interval_s)
            due_keys.append(key)
        return due_keys

    def _push(self, key: K, due: float, interval_s: float) -> float:
        tag = next(self._counter)
        self._entries[key] = (tag, interval_s)
        heapq.heappush(self._heap, (due, tag, key))
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
