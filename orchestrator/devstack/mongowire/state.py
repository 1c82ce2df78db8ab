"""The data behind every connection of the stand-in: databases, cursors, counters."""

from __future__ import annotations

import itertools
from typing import Any

import mongomock

from orchestrator.devstack.mongowire.counters import OpCounters
from orchestrator.devstack.mongowire.cursors import CursorStore


class State:
    """The shared state behind every connection: data, open cursors, connection ids."""

    def __init__(self, client: Any = None) -> None:
        self.client: Any = client if client is not None else mongomock.MongoClient()
        self.cursors = CursorStore()
        self.counters = OpCounters()
        """What clients asked for, reported by ``serverStatus``."""
        self.connections_created = 0
        self._connection_ids = itertools.count(1)

    def new_connection_id(self) -> int:
        """A fresh id to report as ``connectionId`` in the handshake."""
        self.connections_created += 1
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
