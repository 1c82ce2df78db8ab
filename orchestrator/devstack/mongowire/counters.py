"""What clients asked of the stand-in, counted the way a ``mongod`` counts it (``stats``)."""

from __future__ import annotations

import time
from collections import Counter

import bson

from orchestrator.devstack.mongowire.protocol import Document

OPCOUNTER_NAMES = ("insert", "query", "update", "delete", "getmore", "command")
UNKNOWN_COMMAND = "<UNKNOWN>"

#: Commands counted per statement in ``opcounters``, by the field holding the statements.
_PER_STATEMENT = {"insert": "documents", "update": "updates", "delete": "deletes"}
_SINGLE = {"find": "query", "getMore": "getmore"}


class OpCounters:
    """What clients asked for since the server started (see the module docstring)."""

    def __init__(self) -> None:
        self.ops: Counter[str] = Counter(dict.fromkeys(OPCOUNTER_NAMES, 0))
        self.commands_total: Counter[str] = Counter()
        self.commands_failed: Counter[str] = Counter()
        self.started = time.monotonic()

    def record(self, name: str, body: Document, *, known: bool) -> None:
        """Count one received command ``name`` with its ``body``."""
        self.commands_total[name if known else UNKNOWN_COMMAND] += 1
        field = _PER_STATEMENT.get(name)
        if field is not None:
            statements = body.get(field)
            self.ops[name] += len(statements) if isinstance(statements, list) else 0
        else:
            self.ops[_SINGLE.get(name, "command")] += 1

    def failed(self, name: str, *, known: bool) -> None:
        """Count one failed command (an ``ok: 0`` reply)."""
        self.commands_failed[name if known else UNKNOWN_COMMAND] += 1

    def metrics_commands(self) -> Document:
        """``metrics.commands``: {name: {total, failed}} as Int64, like a real server."""
        return {
            name: {"total": bson.Int64(total), "failed": bson.Int64(self.commands_failed[name])}
            for name, total in sorted(self.commands_total.items())
        }
