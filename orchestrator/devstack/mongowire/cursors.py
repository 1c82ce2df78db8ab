"""Server-side cursors: results are materialised once and handed out in batches."""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field

import bson
from bson.int64 import Int64

from orchestrator.devstack.mongowire.protocol import CODEC_OPTIONS, MAX_BSON_OBJECT_SIZE, Document
from orchestrator.devstack.mongowire.request import CommandError

DEFAULT_FIRST_BATCH = 101
MAX_OPEN_CURSORS = 10_000
_BATCH_BYTES = MAX_BSON_OBJECT_SIZE - 64 * 1024  # leave room for the reply envelope

CURSOR_NOT_FOUND = 43


@dataclass(slots=True)
class OpenCursor:
    """Documents not yet returned for one cursor id."""

    namespace: str
    pending: deque[Document] = field(default_factory=deque)


def _take(pending: deque[Document], batch_size: int) -> list[Document]:
    """Pop up to ``batch_size`` documents (0 = no count limit) within the size budget."""
    batch: list[Document] = []
    used = 0
    while pending and (batch_size <= 0 or len(batch) < batch_size):
        size = len(bson.encode(pending[0], codec_options=CODEC_OPTIONS))
        if batch and used + size > _BATCH_BYTES:
            break
        batch.append(pending.popleft())
        used += size
    return batch


class CursorStore:
    """Open cursors, shared by all connections (cursors are not tied to a connection)."""

    def __init__(self) -> None:
        self._cursors: dict[int, OpenCursor] = {}
        self._ids = itertools.count(1)

    def open(
        self,
        namespace: str,
        documents: list[Document],
        *,
        batch_size: int | None = None,
        single_batch: bool = False,
    ) -> Document:
        """Answer a find/aggregate-style command with ``firstBatch`` and a cursor id."""
        pending = deque(documents)
        first_size = DEFAULT_FIRST_BATCH if batch_size is None else batch_size
        if first_size == 0 and single_batch:
            first_size = -1
        batch = _take(pending, first_size) if first_size != 0 else []
        cursor_id = 0
        if pending and not single_batch:
            cursor_id = next(self._ids)
            self._cursors[cursor_id] = OpenCursor(namespace, pending)
            while len(self._cursors) > MAX_OPEN_CURSORS:  # forget the oldest abandoned cursor
                del self._cursors[next(iter(self._cursors))]
        return {"cursor": {"firstBatch": batch, "id": Int64(cursor_id), "ns": namespace}, "ok": 1.0}

    def get_more(self, cursor_id: int, namespace: str, batch_size: int) -> Document:
        """Answer ``getMore`` with the next batch; the id becomes 0 once exhausted."""
        cursor = self._cursors.get(cursor_id)
        if cursor is None:
            raise CommandError(CURSOR_NOT_FOUND, f"cursor id {cursor_id} not found")
        if cursor.namespace != namespace:
            raise CommandError(
                13, f"cursor id {cursor_id} belongs to {cursor.namespace}, not {namespace}"
            )
        batch = _take(cursor.pending, batch_size)
        if not cursor.pending:
            del self._cursors[cursor_id]
            cursor_id = 0
        return {
            "cursor": {"nextBatch": batch, "id": Int64(cursor_id), "ns": namespace},
            "ok": 1.0,
        }

    def kill(self, cursor_ids: list[int]) -> Document:
        """Answer ``killCursors``."""
        killed: list[Int64] = []
        not_found: list[Int64] = []
        for cursor_id in cursor_ids:
            if self._cursors.pop(int(cursor_id), None) is None:
                not_found.append(Int64(cursor_id))
            else:
                killed.append(Int64(cursor_id))
        return {
            "cursorsKilled": killed,
            "cursorsNotFound": not_found,
            "cursorsAlive": [],
            "cursorsUnknown": [],
            "ok": 1.0,
        }

    def __len__(self) -> int:
        return len(self._cursors)
