"""Handshake, diagnostics, and database, collection and index management commands."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import bson
from mongomock import filtering

from orchestrator.devstack.mongowire.protocol import (
    CODEC_OPTIONS,
    MAX_BSON_OBJECT_SIZE,
    MAX_MESSAGE_SIZE_BYTES,
    Document,
)
from orchestrator.devstack.mongowire.request import CommandError, Request, translate

if TYPE_CHECKING:
    from orchestrator.devstack.mongowire.state import State

SERVER_VERSION = "7.0.0"
MAX_WIRE_VERSION = 21  # MongoDB 7.0
MAX_WRITE_BATCH_SIZE = 100_000
SESSION_TIMEOUT_MINUTES = 30
NAMESPACE_NOT_FOUND = 26
INDEX_OPTIONS = ("unique", "sparse", "partialFilterExpression", "expireAfterSeconds")
"""The index options kept (TTL is stored, never enforced); snapshots keep the same ones."""
_ID_INDEX: Document = {"v": 2, "key": {"_id": 1}, "name": "_id_"}
_matches: Callable[[Document, Document], bool] = filtering.filter_applies


def hello(_: State, req: Request) -> Document:
    """``hello`` / ``isMaster``: describe a writable standalone without compression."""
    primary_field = "isWritablePrimary" if req.name == "hello" else "ismaster"
    return {
        "helloOk": True,
        primary_field: True,
        "maxBsonObjectSize": MAX_BSON_OBJECT_SIZE,
        "maxMessageSizeBytes": MAX_MESSAGE_SIZE_BYTES,
        "maxWriteBatchSize": MAX_WRITE_BATCH_SIZE,
        "localTime": datetime.datetime.now(datetime.UTC).replace(tzinfo=None),
        "logicalSessionTimeoutMinutes": SESSION_TIMEOUT_MINUTES,
        "connectionId": req.connection_id,
        "minWireVersion": 0,
        "maxWireVersion": MAX_WIRE_VERSION,
        "readOnly": False,
        "ok": 1.0,
    }


def ok(_: State, __: Request) -> Document:
    """Commands that need nothing done: ``ping``, ``endSessions``."""
    return {"ok": 1.0}


def build_info(_: State, __: Request) -> Document:
    """``buildInfo``: claims the server version the wire version corresponds to."""
    return {
        "version": SERVER_VERSION,
        "versionArray": [7, 0, 0, 0],
        "gitVersion": "mongowire-stand-in",
        "bits": 64,
        "debug": False,
        "maxBsonObjectSize": MAX_BSON_OBJECT_SIZE,
        "storageEngines": ["mongomock"],
        "ok": 1.0,
    }


def connection_status(_: State, __: Request) -> Document:
    """``connectionStatus``: nobody is authenticated, nobody needs to be."""
    return {"authInfo": {"authenticatedUsers": [], "authenticatedUserRoles": []}, "ok": 1.0}


def _require_collection(backend: State, req: Request) -> Any:
    if not backend.collection_exists(req.db, req.target):
        raise CommandError(NAMESPACE_NOT_FOUND, f"ns does not exist: {req.namespace}")
    return backend.collection(req.db, req.target)


def create_indexes(backend: State, req: Request) -> Document:
    """``createIndexes`` with unique, sparse, partialFilterExpression (TTL is not enforced)."""
    specs = req.get("indexes")
    if not isinstance(specs, list) or not specs:
        raise CommandError(2, "createIndexes.indexes must be a non-empty array")
    created = not backend.collection_exists(req.db, req.target)
    collection = backend.ensure_collection(req.db, req.target)
    before = len(collection.index_information())
    for spec in specs:
        key = spec.get("key") if isinstance(spec, dict) else None
        name = spec.get("name") if isinstance(spec, dict) else None
        if not isinstance(key, dict) or not key or not isinstance(name, str):
            raise CommandError(9, f"index spec needs a key document and a name: {spec!r}")
        options = {option: spec[option] for option in INDEX_OPTIONS if option in spec}
        try:
            collection.create_index(list(key.items()), name=name, **options)
        except Exception as exc:
            raise translate(exc, default_code=85, namespace=req.namespace) from exc
    after = len(collection.index_information())
    return {
        "createdCollectionAutomatically": created,
        "numIndexesBefore": before,
        "numIndexesAfter": after,
        "ok": 1.0,
    }


def list_indexes(backend: State, req: Request) -> Document:
    """``listIndexes``; a missing collection is NamespaceNotFound, as on a real server."""
    collection = _require_collection(backend, req)
    indexes: list[Document] = list(collection.list_indexes())
    batch_size = req.document("cursor").get("batchSize")
    return backend.cursors.open(req.namespace, indexes, batch_size=batch_size)


def drop_indexes(backend: State, req: Request) -> Document:
    """``dropIndexes`` by name, key pattern, list of names, or ``"*"``."""
    collection = _require_collection(backend, req)
    information: dict[str, Document] = collection.index_information()
    target = req.get("index")
    if target == "*":
        collection.drop_indexes()
        return {"nIndexesWas": len(information), "ok": 1.0}
    if isinstance(target, dict):
        wanted = list(target.items())
        names = [n for n, info in information.items() if list(info["key"]) == wanted]
        if not names:
            raise CommandError(27, f"can't find index with key: {target!r}")
    elif isinstance(target, str):
        names = [target]
    elif isinstance(target, list) and all(isinstance(n, str) for n in target):
        names = list(target)
    else:
        raise CommandError(14, "dropIndexes.index must be a string, a document or an array")
    for name in names:
        if name == "_id_":
            raise CommandError(72, "cannot drop _id index")
        if name not in information:
            raise CommandError(27, f"index not found with name [{name}]")
    for name in names:
        collection.drop_index(name)
    return {"nIndexesWas": len(information), "ok": 1.0}


def drop(backend: State, req: Request) -> Document:
    """``drop`` a collection; like MongoDB 7.0, a missing one is not an error."""
    information = (
        backend.collection(req.db, req.target).index_information()
        if backend.collection_exists(req.db, req.target)
        else {}
    )
    backend.database(req.db).drop_collection(req.target)
    return {"nIndexesWas": len(information), "ns": req.namespace, "ok": 1.0}


def drop_database(backend: State, req: Request) -> Document:
    """``dropDatabase``."""
    backend.client.drop_database(req.db)
    return {"dropped": req.db, "ok": 1.0}


def create(backend: State, req: Request) -> Document:
    """``create`` a collection; options such as validators are accepted but not enforced."""
    if req.get("viewOn") or req.get("timeseries") or req.get("capped"):
        raise CommandError(238, "views, time series and capped collections are not supported")
    if backend.collection_exists(req.db, req.target):
        raise CommandError(48, f"Collection {req.namespace} already exists.")
    backend.database(req.db).create_collection(req.target)
    return {"ok": 1.0}


def list_collections(backend: State, req: Request) -> Document:
    """``listCollections`` with ``filter`` and ``nameOnly``."""
    name_only = bool(req.get("nameOnly"))
    query = req.document("filter")
    entries: list[Document] = []
    for name in sorted(backend.database(req.db).list_collection_names()):
        entry: Document = {"name": name, "type": "collection"}
        if not name_only:
            entry.update(options={}, info={"readOnly": False}, idIndex=dict(_ID_INDEX))
        if _matches(query, entry):
            entries.append(entry)
    batch_size = req.document("cursor").get("batchSize")
    return backend.cursors.open(f"{req.db}.$cmd.listCollections", entries, batch_size=batch_size)


def list_databases(backend: State, req: Request) -> Document:
    """``listDatabases`` with ``filter`` and ``nameOnly``; sizes are rough estimates."""
    query = req.document("filter")
    entries: list[Document] = []
    for name in sorted(backend.client.list_database_names()):
        size = _database_size(backend, name)
        entry: Document = {"name": name}
        if not req.get("nameOnly"):
            entry.update(sizeOnDisk=size, empty=size == 0)
        if _matches(query, entry):
            entries.append(entry)
    reply: Document = {"databases": entries}
    if not req.get("nameOnly"):
        reply["totalSize"] = sum(int(e["sizeOnDisk"]) for e in entries)
    reply["ok"] = 1.0
    return reply


def _database_size(backend: State, name: str) -> int:
    database = backend.database(name)
    return sum(
        len(bson.encode(document, codec_options=CODEC_OPTIONS))
        for collection in database.list_collection_names()
        for document in database[collection].find()
    )


def rename_collection(backend: State, req: Request) -> Document:
    """``renameCollection`` within one database (run against ``admin``)."""
    source, target = req.get("renameCollection"), req.get("to")
    if not isinstance(source, str) or not isinstance(target, str):
        raise CommandError(14, "renameCollection and to must be namespace strings")
    source_db, _, source_name = source.partition(".")
    target_db, _, target_name = target.partition(".")
    if source_db != target_db:
        raise CommandError(238, "renaming across databases is not supported")
    if not backend.collection_exists(source_db, source_name):
        raise CommandError(NAMESPACE_NOT_FOUND, f"Source collection {source} does not exist")
    if backend.collection_exists(target_db, target_name) and not req.get("dropTarget"):
        raise CommandError(48, f"target namespace exists: {target}")
    database = backend.database(source_db)
    if req.get("dropTarget"):
        database.drop_collection(target_name)
    database.rename_collection(source_name, target_name)
    return {"ok": 1.0}
