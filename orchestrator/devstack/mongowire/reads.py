"""Read commands: find, getMore, killCursors, aggregate, count, distinct."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orchestrator.devstack.mongowire.protocol import Document
from orchestrator.devstack.mongowire.request import CommandError, Request

if TYPE_CHECKING:
    from orchestrator.devstack.mongowire.state import State

_UNSUPPORTED_FIND_OPTIONS = ("tailable", "awaitData", "min", "max", "returnKey", "showRecordId")


def _sort_spec(sort: Document) -> list[tuple[str, Any]] | None:
    for key, direction in sort.items():
        if isinstance(direction, dict):
            raise CommandError(238, f"sort by {key}: {direction!r} is not supported")
    return list(sort.items()) or None


def _batch_size(req: Request, options: Document | None = None) -> int | None:
    source = req.body if options is None else options
    value = source.get("batchSize")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise CommandError(2, f"batchSize must be a non-negative integer, not {value!r}")
    return int(value)


def find(backend: State, req: Request) -> Document:
    """``find`` with filter, sort, projection, skip, limit, batchSize and singleBatch."""
    for option in _UNSUPPORTED_FIND_OPTIONS:
        if req.get(option):
            raise CommandError(238, f"find option {option!r} is not supported")
    if req.get("collation"):
        raise CommandError(238, "collation is not supported")
    limit = req.integer("limit")
    single_batch = bool(req.get("singleBatch")) or limit < 0
    limit = abs(limit)
    skip = req.integer("skip")
    if skip < 0:
        raise CommandError(2, "skip value must be non-negative")
    projection = req.document("projection") or None
    collection = backend.collection(req.db, req.target)
    cursor = collection.find(
        req.document("filter"),
        projection,
        skip=skip,
        limit=limit,
        sort=_sort_spec(req.document("sort")),
    )
    documents: list[Document] = list(cursor)
    batch_size = _batch_size(req)
    if limit and batch_size is not None:
        batch_size = min(batch_size, limit)
    return backend.cursors.open(
        req.namespace, documents, batch_size=batch_size, single_batch=single_batch
    )


def get_more(backend: State, req: Request) -> Document:
    """``getMore`` on a cursor opened by find, aggregate or a listing command."""
    cursor_id = req.get("getMore")
    if isinstance(cursor_id, bool) or not isinstance(cursor_id, int):
        raise CommandError(14, f"getMore cursor id must be an integer, not {cursor_id!r}")
    collection = req.get("collection")
    if not isinstance(collection, str):
        raise CommandError(14, "getMore.collection must be a string")
    return backend.cursors.get_more(int(cursor_id), f"{req.db}.{collection}", _batch_size(req) or 0)


def kill_cursors(backend: State, req: Request) -> Document:
    """``killCursors``; unknown ids are reported, not refused."""
    req.target  # noqa: B018 - validates the collection name
    ids = req.get("cursors")
    if not isinstance(ids, list):
        raise CommandError(14, "killCursors.cursors must be an array")
    return backend.cursors.kill([int(i) for i in ids])


def aggregate(backend: State, req: Request) -> Document:
    """``aggregate`` on a collection, answered with a cursor."""
    if req.get("explain"):
        raise CommandError(238, "aggregate explain is not supported")
    if not isinstance(req.body[req.name], str):
        raise CommandError(238, "database-level aggregate ({aggregate: 1}) is not supported")
    pipeline = req.get("pipeline")
    if not isinstance(pipeline, list):
        raise CommandError(14, "'pipeline' option must be specified as an array")
    if "cursor" not in req.body:
        raise CommandError(9, "The 'cursor' option is required")
    collection = backend.collection(req.db, req.target)
    # mongomock appends ``_id`` to $group output; a real server puts it first.
    documents = [_id_first(doc) for doc in collection.aggregate(pipeline)]
    return backend.cursors.open(
        req.namespace, documents, batch_size=_batch_size(req, req.document("cursor"))
    )


def _id_first(document: Document) -> Document:
    if "_id" not in document or next(iter(document)) == "_id":
        return document
    return {"_id": document["_id"], **{k: v for k, v in document.items() if k != "_id"}}


def count(backend: State, req: Request) -> Document:
    """``count`` (used by ``estimated_document_count``), honouring query, skip and limit."""
    collection = backend.collection(req.db, req.target)
    skip = max(req.integer("skip"), 0)
    limit = abs(req.integer("limit"))
    matched = collection.find(req.document("query"), {"_id": 1}, skip=skip, limit=limit)
    return {"n": sum(1 for _ in matched), "ok": 1.0}


def distinct(backend: State, req: Request) -> Document:
    """``distinct`` values of one key among documents matching ``query``."""
    key = req.get("key")
    if not isinstance(key, str):
        raise CommandError(14, "distinct.key must be a string")
    collection = backend.collection(req.db, req.target)
    values: list[Any] = list(collection.distinct(key, req.document("query")))
    return {"values": values, "ok": 1.0}
