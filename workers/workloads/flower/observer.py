"""What the server participant learns from a Flower strategy as it runs: rounds, metrics and
the global model, each handed to the SDK.

* Rounds: a push carrying a new ``server-round`` (or legacy numeric ``group_id``) announces it
  (``ctx.round_started``), so the job shows Flower's progress and gets per-round deadlines.
* Checkpoints: the arrays a strategy sends are the global model. Those in round *r*'s
  ``evaluate`` messages (sent after aggregating round *r*) or, failing that, in round *r+1*'s
  ``train`` messages are round *r*'s model, saved as ``.npz`` once per round; the spec's last
  round's is the final one (else the last saved is saved again as final when the app ends).
* Metrics: the server's row of round *r* holds the aggregated ``MetricRecord``s the strategy
  logs (``train_<name>``, ``evaluate_<name>``; a server-side ``evaluate_fn``'s as bare
  ``<name>``, round 0 for the initial evaluation) and how many replies and failures each
  phase had (``train_replies``, ``train_failures``, ...). The records are taken from Flower's
  log records (their arguments, not their text) by :class:`StrategyMetricsHandler`, which sees
  only the ServerApp's own thread; they are reported at the next push and at the end.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import anyio
from flwr.app import ArrayRecord, Message, MetricRecord

from workers.sdk import WorkloadContext
from workers.workloads.flower import records, wire


@dataclass(frozen=True, slots=True)
class _Saved:
    round: int
    key: str
    data: bytes
    final: bool


class RoundObserver:
    """Rounds, metrics and checkpoints of one ServerApp run (used on the event loop)."""

    def __init__(self, ctx: WorkloadContext) -> None:
        self.ctx = ctx
        self.round = 0
        """The latest round seen in the messages pushed."""
        self.phase = ""
        """The phase (``train``, ``evaluate``, ``query``) of the latest push."""
        self.logged: deque[tuple[int, dict[str, float]]] = deque()
        """Metrics taken from the strategy's log records (appended from the app's thread)."""
        self._rows: dict[int, dict[str, float]] = {}
        self._checkpointed: set[int] = set()
        self._last: _Saved | None = None

    async def on_push(self, messages: Sequence[Message]) -> None:
        await self.flush()
        if not messages:
            return
        rounds = [r for m in messages if (r := wire.message_round(m)) is not None]
        round_ = max(rounds, default=self.round)
        if round_ > self.round:
            self.round = round_
            await self.ctx.round_started(round_)
        self.phase = wire.phase(messages[0])
        arrays = records.first_arrays(messages)
        if arrays is None or not len(arrays):
            return
        if self.phase == "evaluate" and round_ >= 1:
            await self._checkpoint(round_, arrays)
        elif self.phase == "train" and round_ > 1:
            await self._checkpoint(round_ - 1, arrays)

    async def on_replies(self, replies: Sequence[Message]) -> None:
        counts: dict[str, float] = {}
        for reply in replies:
            name = f"{wire.phase(reply)}_{'failures' if reply.has_error() else 'replies'}"
            counts[name] = counts.get(name, 0.0) + 1
        row = self._rows.get(self.round, {})
        await self._report(self.round, {k: row.get(k, 0.0) + v for k, v in counts.items()})

    async def flush(self) -> None:
        """Report what the strategy logged since the last flush."""
        while self.logged:
            round_, metrics = self.logged.popleft()
            await self._report(round_, metrics)

    async def finish(self) -> str | None:
        """After the ServerApp returned: the last metrics, and the final checkpoint's key."""
        await self.flush()
        last = self._last
        if last is None:
            return None
        if not last.final:  # the app ran other than the spec's rounds: its last is the final
            await self.ctx.save_checkpoint(last.round, last.data, final=True)
        return last.key

    async def _report(self, round_: int, metrics: dict[str, float]) -> None:
        row = records.merge_round(self._rows, round_, metrics)
        if row is not None:
            await self.ctx.report_metrics(round_, row)

    async def _checkpoint(self, round_: int, arrays: ArrayRecord) -> None:
        if round_ in self._checkpointed:
            return
        self._checkpointed.add(round_)
        data = await anyio.to_thread.run_sync(records.arrays_to_npz, arrays)
        final = round_ == self.ctx.rounds
        key = await self.ctx.save_checkpoint(round_, data, final=final)
        self._last = _Saved(round_, key, data, final)


class StrategyMetricsHandler(logging.Handler):
    """Takes the ``MetricRecord``s a strategy logs on the ServerApp's thread (see the module
    doc); attach it to Flower's logger for the run."""

    def __init__(self, observer: RoundObserver) -> None:
        super().__init__(logging.DEBUG)
        self.observer = observer
        self.thread_id: int | None = None

    def bind_current_thread(self) -> None:
        """Accept records from the calling thread only (the ServerApp's)."""
        self.thread_id = threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self.thread_id:
            return
        # (logging unpacks a lone Mapping argument, and a MetricRecord is one)
        args = record.args if isinstance(record.args, tuple) else (record.args,)
        text = str(record.msg)
        observer = self.observer
        for arg in args:
            if not isinstance(arg, MetricRecord):
                continue
            if "Initial" in text:
                round_, prefix = 0, ""
            elif "Aggregated" in text:
                round_, prefix = observer.round, observer.phase or "train"
            else:  # a server-side evaluate_fn's result
                round_, prefix = observer.round, ""
            observer.logged.append((round_, records.scalar_metrics(arg, prefix)))
