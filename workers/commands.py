"""Reading a worker's command stream: what an entry holds, and what the worker saw lately."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

from pydantic import ValidationError

from orchestrator.bus import Entry
from orchestrator.core.commands import COMMAND_ADAPTER, Command
from workers.config import short

K = TypeVar("K", bound=Hashable)


def decode_command(entry: Entry, worker: str) -> Command | str:
    """The command an entry of ``worker``'s command stream holds, or why it holds none."""
    raw = entry.fields.get("command")
    if raw is None:
        return "command entry has no 'command' field"
    try:
        command = COMMAND_ADAPTER.validate_json(raw)
    except ValidationError as exc:
        return f"invalid command: {short(str(exc))}"
    if command.worker != worker:
        return f"command for worker {command.worker!r} on the command stream of {worker!r}"
    return command


class Recent(Generic[K]):
    """The last ``size`` keys added (run ids started, participants ended), oldest forgotten."""

    def __init__(self, size: int = 10_000) -> None:
        self._size = size
        self._keys: OrderedDict[K, None] = OrderedDict()

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def add(self, key: K) -> None:
        self._keys[key] = None
        while len(self._keys) > self._size:
            self._keys.popitem(last=False)
