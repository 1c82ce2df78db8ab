"""The heartbeat schedule on its own: time is a parameter, so nothing here sleeps."""

from __future__ import annotations

import anyio
from structlog.testing import capture_logs

from workers.heartbeats import MIN_INTERVAL_S, Heartbeats, HeartbeatSchedule


def test_each_key_is_due_at_its_own_interval() -> None:
    schedule: HeartbeatSchedule[str] = HeartbeatSchedule()
    schedule.add("fast", 1.0, now=0.0)
    schedule.add("slow", 3.0, now=0.0)
    assert schedule.next_due() == 1.0
    beats = {t: sorted(schedule.pop_due(float(t))) for t in range(7)}
    assert beats == {
        0: [], 1: ["fast"], 2: ["fast"], 3: ["fast", "slow"], 4: ["fast"], 5: ["fast"],
        6: ["fast", "slow"],
    }
    assert schedule.next_due() == 7.0


def test_a_removed_key_is_never_due_again() -> None:
    schedule: HeartbeatSchedule[str] = HeartbeatSchedule()
    schedule.add("a", 1.0, now=0.0)
    schedule.add("b", 2.0, now=0.0)
    schedule.remove("a")
    schedule.remove("never-added")
    assert "a" not in schedule and len(schedule) == 1
    assert schedule.next_due() == 2.0
    assert schedule.pop_due(10.0) == ["b"]
    schedule.remove("b")
    assert schedule.next_due() is None and schedule.pop_due(100.0) == []


def test_a_late_wake_up_beats_once_and_delays_the_next_beat() -> None:
    schedule: HeartbeatSchedule[str] = HeartbeatSchedule()
    schedule.add("a", 1.0, now=0.0)
    schedule.add("b", 1.0, now=0.5)
    assert schedule.pop_due(1.2) == ["a"]  # a little late: never two beats closer than 1.0
    assert schedule.next_due() == 1.5
    assert sorted(schedule.pop_due(7.5)) == ["a", "b"]  # far behind: one beat each, no burst
    assert schedule.next_due() == 8.5  # ... and from now on both in one wake-up
    assert sorted(schedule.pop_due(8.5)) == ["a", "b"]


def test_adding_again_reschedules_and_tiny_intervals_are_raised() -> None:
    schedule: HeartbeatSchedule[str] = HeartbeatSchedule()
    schedule.add("a", 5.0, now=0.0)
    schedule.add("a", 1.0, now=0.0)
    assert len(schedule) == 1 and schedule.next_due() == 1.0
    assert schedule.pop_due(1.0) == ["a"] and schedule.pop_due(5.0) == ["a"]
    schedule.add("b", 0.0, now=0.0)
    assert schedule.next_due() == MIN_INTERVAL_S


class Beater:
    def __init__(self) -> None:
        self.beats: list[float] = []

    def heartbeat(self) -> None:
        self.beats.append(anyio.current_time())


class Broken:
    def heartbeat(self) -> None:
        raise RuntimeError("a bug")


async def test_the_task_wakes_for_a_participant_due_sooner() -> None:
    slow, fast = Beater(), Beater()
    with capture_logs() as logs:  # (rendering no traceback also keeps the loop free)
        heartbeats = Heartbeats()
        async with anyio.create_task_group() as tg:
            await tg.start(heartbeats.run)
            heartbeats.add(slow, 10.0)  # the task now sleeps for 10 s ...
            heartbeats.add(Broken(), 0.02)  # ... and a participant that raises stops nobody
            await anyio.sleep(0.01)
            heartbeats.add(fast, 0.05)  # ... until this one is due
            await anyio.sleep(0.28)
            heartbeats.remove(fast)
            count = len(fast.beats)
            await anyio.sleep(0.12)
            tg.cancel_scope.cancel()
    assert 4 <= count <= 6, fast.beats
    assert len(fast.beats) == count  # none after remove
    assert slow.beats == []
    assert logs and {entry["event"] for entry in logs} == {"cannot queue a heartbeat"}


class Run:
    """A participant stand-in that a weak reference can follow."""


def test_a_removed_key_is_let_go_at_once() -> None:
    import gc  # noqa: PLC0415
    import weakref  # noqa: PLC0415

    schedule: HeartbeatSchedule[Run] = HeartbeatSchedule()
    kept = Run()
    schedule.add(kept, 5.0, now=0.0)
    gone = [Run() for _ in range(1000)]
    refs = [weakref.ref(run) for run in gone]
    for run in gone:
        schedule.add(run, 5.0, now=0.0)
    gc.disable()  # (freed by reference counting, or not at all)
    try:
        for run in gone:
            schedule.remove(run)
        del gone, run
        assert all(ref() is None for ref in refs)  # not held until its beat would be due
    finally:
        gc.enable()
    assert len(schedule) == 1 and schedule.pop_due(5.0) == [kept]
    assert schedule.next_due() == 10.0
