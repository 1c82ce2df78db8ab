"""Write commands: insert, update, delete (batched, ordered or not) and findAndModify.

Each statement of a batch runs on its own; a failure becomes a ``writeErrors`` entry with
the statement's index. Ordered batches stop at the first failure, unordered ones carry on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pymongo

from orchestrator.devstack.mongowire.protocol import Document
from orchestrator.devstack.mongowire.request import CommandError, Request, translate

if TYPE_CHECKING:
    from orchestrator.devstack.mongowire.state import State


def _statements(req: Request, field: str) -> list[Document]:
    value = req.get(field)
    if not isinstance(value, list) or not all(isinstance(s, dict) for s in value):
        raise CommandError(14, f"{req.name}.{field} must be an array of documents")
    return value


def _run_batch(
    req: Request, statements: list[Document], run: Callable[[int, Document], None]
) -> list[Document]:
    """Run each statement, returning the write errors; stop early when ordered."""
    ordered = req.get("ordered", True) is not False
    errors: list[Document] = []
    for index, statement in enumerate(statements):
        try:
            run(index, statement)
        except Exception as exc:  # every failure is reported, none may kill the server
            errors.append(translate(exc, namespace=req.namespace).to_write_error(index))
            if ordered:
                break
    return errors


def _reply(n: int, errors: list[Document], **extra: Any) -> Document:
    reply: Document = {"n": n, **extra}
    if errors:
        reply["writeErrors"] = errors
    reply["ok"] = 1.0
    return reply


def insert(backend: State, req: Request) -> Document:
    """``insert`` with ``documents`` (usually sent as an OP_MSG document sequence)."""
    collection = backend.ensure_collection(req.db, req.target)
    inserted = 0

    def run(_: int, document: Document) -> None:
        nonlocal inserted
        collection.insert_one(document)
        inserted += 1

    errors = _run_batch(req, _statements(req, "documents"), run)
    return _reply(inserted, errors)


def _is_operator_update(update: Any) -> bool:
    return isinstance(update, dict) and bool(update) and next(iter(update)).startswith("$")


def _reject_unsupported(statement: Document) -> None:
    if statement.get("arrayFilters"):
        raise CommandError(238, "arrayFilters are not supported by the mongowire stand-in")
    if statement.get("collation"):
        raise CommandError(238, "collation is not supported by the mongowire stand-in")


def update(backend: State, req: Request) -> Document:
    """``update`` with operator, replacement or pipeline updates, multi and upsert."""
    statements = _statements(req, "updates")
    if any(statement.get("upsert") for statement in statements):
        backend.ensure_collection(req.db, req.target)
    collection = backend.collection(req.db, req.target)
    matched = 0
    modified = 0
    upserted: list[Document] = []

    def run(index: int, statement: Document) -> None:
        nonlocal matched, modified
        _reject_unsupported(statement)
        query = statement.get("q") or {}
        change = statement.get("u")
        upsert = bool(statement.get("upsert"))
        multi = bool(statement.get("multi"))
        if isinstance(change, dict) and not _is_operator_update(change):
            if multi:
                raise CommandError(9, "multi update is not supported for replacement-style update")
            result = collection.replace_one(query, change, upsert=upsert)
        elif isinstance(change, dict | list) and change:
            method = collection.update_many if multi else collection.update_one
            result = method(query, change, upsert=upsert)
        else:
            raise CommandError(9, f"update.u must be a document or a pipeline, not {change!r}")
        raw: Document = result.raw_result
        if raw.get("upserted") is not None:
            upserted.append({"index": index, "_id": raw["upserted"]})
            matched += 1
        else:
            matched += int(raw.get("n", 0))
            modified += int(raw.get("nModified", 0))

    errors = _run_batch(req, statements, run)
    extra: Document = {"nModified": modified}
    if upserted:
        extra["upserted"] = upserted
    return _reply(matched, errors, **extra)


def delete(backend: State, req: Request) -> Document:
    """``delete`` statements with ``limit`` 0 (all matches) or 1 (the first)."""
    collection = backend.collection(req.db, req.target)
    deleted = 0

    def run(_: int, statement: Document) -> None:
        nonlocal deleted
        _reject_unsupported(statement)
        query = statement.get("q") or {}
        limit = statement.get("limit", 0)
        if limit not in (0, 1):
            raise CommandError(9, f"delete limit must be 0 or 1, not {limit!r}")
        method = collection.delete_one if limit == 1 else collection.delete_many
        deleted += int(method(query).deleted_count)

    errors = _run_batch(req, _statements(req, "deletes"), run)
    return _reply(deleted, errors)


def find_and_modify(backend: State, req: Request) -> Document:
    """``findAndModify``: remove, or update/replace with ``new`` and ``upsert``."""
    _reject_unsupported(req.body)
    if req.get("upsert"):
        backend.ensure_collection(req.db, req.target)
    collection = backend.collection(req.db, req.target)
    query = req.document("query")
    sort = list(req.document("sort").items()) or None
    projection = req.document("fields") or None
    change = req.get("update")
    remove = bool(req.get("remove"))
    if remove == (change is not None):
        raise CommandError(9, "findAndModify needs exactly one of 'remove' and 'update'")
    try:
        if remove:
            value = collection.find_one_and_delete(query, projection, sort=sort)
            return {"lastErrorObject": {"n": int(value is not None)}, "value": value, "ok": 1.0}
        return _modify(
            collection, req, query=query, sort=sort, projection=projection, change=change
        )
    except CommandError:
        raise
    except Exception as exc:
        raise translate(exc, namespace=req.namespace) from exc


def _modify(
    collection: Any,
    req: Request,
    *,
    query: Document,
    sort: list[tuple[str, Any]] | None,
    projection: Document | None,
    change: Any,
) -> Document:
    upsert = bool(req.get("upsert"))
    return_new = bool(req.get("new"))
    existing = collection.find_one(query, sort=sort)
    if existing is None and not upsert:
        return {"lastErrorObject": {"n": 0, "updatedExisting": False}, "value": None, "ok": 1.0}
    before = None
    if existing is not None:
        query = {"_id": existing["_id"]}
        before = collection.find_one(query, projection) if projection else existing
    method = (
        collection.find_one_and_update
        if _is_operator_update(change) or isinstance(change, list)
        else collection.find_one_and_replace
    )
    after = method(query, change, upsert=upsert, return_document=pymongo.ReturnDocument.AFTER)
    if after is not None and projection:
        after = collection.find_one({"_id": after["_id"]}, projection)
    last_error: Document = {"n": 1, "updatedExisting": existing is not None}
    if existing is None and after is not None:
        last_error["upserted"] = after.get("_id")
    return {"lastErrorObject": last_error, "value": after if return_new else before, "ok": 1.0}
