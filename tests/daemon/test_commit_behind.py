"""The event applier's commit-behind: a batch's commit (commands, updates, XACK) runs while
the next batch is handled, one commit at a time, in order; a failed commit leaves its entries
pending (to be read again) and does not stop the ones after it. That a running applier
commits behind at all is checked in tests/daemon/test_replicas.py."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import anyio
import pytest

from orchestrator.bus.keys import Keys
from orchestrator.bus.streams import Entry, Redis, StreamConsumer
from orchestrator.daemon import Daemon
from orchestrator.store import MemoryJobStore
from tests.daemon.harness import fast_options


def _entry(i: int) -> Entry:
    return Entry("stream", f"{i}-0", {"event": "{}"})


class SlowCommits:
    """Stands in for ``Effects.commit``: records start and end; the first commit is slow."""

    def __init__(self, fail: int | None = None) -> None:
        self.log: list[tuple[str, str]] = []
        self.fail = fail

    async def __call__(self, commands: Sequence[Any], updates: Sequence[Any],
                       acks: Iterable[Entry] = (), consumer: StreamConsumer | None = None) -> None:
        tag = next(iter(acks)).id
        self.log.append(("start", tag))
        await anyio.sleep(0.2 if tag == "0-0" else 0)
        if self.fail is not None and tag == f"{self.fail}-0":
            raise RuntimeError("a bug in the commit")
        self.log.append(("end", tag))


@pytest.fixture
def daemon(redis: Redis, keys: Keys) -> Daemon:
    return Daemon(MemoryJobStore(), redis, fast_options(keys.namespace))


async def test_commits_run_behind_one_at_a_time_and_in_order(daemon: Daemon) -> None:
    applier = daemon.applier
    commits = SlowCommits()
    daemon.effects.commit = commits  # type: ignore[method-assign]
    async with anyio.create_task_group() as tg:
        applier._commits = tg
        await applier._commit(None, [_entry(0)])
        await anyio.wait_all_tasks_blocked()
        # Behind: the handler is back while its (slow) commit is still running.
        assert commits.log == [("start", "0-0")]
        await applier._commit(None, [_entry(1)])  # waits for commit 0, then goes behind
        assert ("end", "0-0") in commits.log
        await applier._commit(None, [_entry(2)])
        await applier.flush()
        applier._commits = None
    assert commits.log == [(edge, f"{i}-0") for i in range(3) for edge in ("start", "end")]


async def test_without_a_running_applier_commits_happen_in_place(daemon: Daemon) -> None:
    commits = SlowCommits()
    daemon.effects.commit = commits  # type: ignore[method-assign]
    await daemon.applier._commit(None, [_entry(0)])  # e.g. reclaimed entries after a stop
    assert commits.log == [("start", "0-0"), ("end", "0-0")]


async def test_a_failing_commit_is_logged_and_the_next_ones_still_run(daemon: Daemon) -> None:
    applier = daemon.applier
    commits = SlowCommits(fail=1)
    daemon.effects.commit = commits  # type: ignore[method-assign]
    async with anyio.create_task_group() as tg:
        applier._commits = tg
        for i in range(3):
            await applier._commit(None, [_entry(i)])
        await applier.flush()
        applier._commits = None
    # Commit 1 failed (its entries stay pending, to be read again); 0 and 2 completed.
    assert ("end", "1-0") not in commits.log
    assert commits.log[-2:] == [("start", "2-0"), ("end", "2-0")]
