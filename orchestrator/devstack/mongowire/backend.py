"""Command dispatch onto one in-process ``mongomock.MongoClient``.

``Backend.execute`` is synchronous and never awaits, so on a single event loop every command
runs atomically with respect to every other connection: that is what makes compare-and-set
updates from racing clients have exactly one winner.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from typing import Any

import mongomock

from orchestrator.devstack.mongowire import admin, reads, writes
from orchestrator.devstack.mongowire.cursors import CursorStore
from orchestrator.devstack.mongowire.protocol import Document
from orchestrator.devstack.mongowire.request import CommandError, Request, translate

log = logging.getLogger(__name__)

Handler = Callable[["Backend", Request], Document]

COMMANDS: dict[str, Handler] = {
    "hello": admin.hello,
    "isMaster": admin.hello,
    "ismaster": admin.hello,
    "ping": admin.ok,
    "endSessions": admin.ok,
    "buildInfo": admin.build_info,
    "buildinfo": admin.build_info,
    "connectionStatus": admin.connection_status,
    "insert": writes.insert,
    "update": writes.update,
    "delete": writes.delete,
    "findAndModify": writes.find_and_modify,
    "findandmodify": writes.find_and_modify,
    "find": reads.find,
    "getMore": reads.get_more,
    "killCursors": reads.kill_cursors,
    "aggregate": reads.aggregate,
    "count": reads.count,
    "distinct": reads.distinct,
    "createIndexes": admin.create_indexes,
    "listIndexes": admin.list_indexes,
    "dropIndexes": admin.drop_indexes,
    "deleteIndexes": admin.drop_indexes,
    "drop": admin.drop,
    "dropDatabase": admin.drop_database,
    "create": admin.create,
    "listCollections": admin.list_collections,
    "listDatabases": admin.list_databases,
    "renameCollection": admin.rename_collection,
}

_TRANSACTION_FIELDS = ("txnNumber", "startTransaction", "autocommit")


class Backend:
    """The shared state behind every connection: data, open cursors, connection ids."""

    def __init__(self, client: Any = None) -> None:
        self.client: Any = client if client is not None else mongomock.MongoClient()
        self.cursors = CursorStore()
        self._connection_ids = itertools.count(1)

    def new_connection_id(self) -> int:
        """A fresh id to report as ``connectionId`` in the handshake."""
        return next(self._connection_ids)

    def database(self, name: str) -> Any:
        """The mongomock database ``name``."""
        return self.client[name]

    def collection(self, db: str, name: str) -> Any:
        """The mongomock collection ``db.name`` (not created until written to)."""
        return self.client[db][name]

    def ensure_collection(self, db: str, name: str) -> Any:
        """The collection ``db.name``, created so that it outlives its last document.

        (mongomock forgets collections that have neither documents nor indexes unless they
        were explicitly created; a real server keeps them until dropped.)
        """
        if not self.collection_exists(db, name):
            self.client[db].create_collection(name)
        return self.client[db][name]

    def collection_exists(self, db: str, name: str) -> bool:
        """Whether ``db.name`` has been created."""
        return name in self.client[db].list_collection_names()

    def execute(self, body: Document, connection_id: int) -> Document:
        """Run one command and return its reply; failures become ``ok: 0`` replies."""
        try:
            return self._dispatch(body, connection_id)
        except CommandError as exc:
            return exc.to_reply()
        except Exception as exc:  # a stand-in must answer, never crash
            log.debug("command failed", exc_info=True)
            return translate(exc).to_reply()

    def _dispatch(self, body: Document, connection_id: int) -> Document:
        if not body:
            raise CommandError(9, "empty command document")
        name = next(iter(body))
        db = body.get("$db")
        if not isinstance(db, str) or not db:
            raise CommandError(40571, "OP_MSG requests require a $db argument")
        if any(field in body for field in _TRANSACTION_FIELDS):
            raise CommandError(
                20, "Transaction numbers are only allowed on a replica set member or mongos"
            )
        handler = COMMANDS.get(name)
        if handler is None:
            raise CommandError(59, f"no such command: '{name}'")
        return handler(self, Request(name, db, body, connection_id))
