"""Command dispatch onto one in-process ``mongomock.MongoClient``.

``Backend.execute`` is synchronous and never awaits, so on a single event loop every command
runs atomically with respect to every other connection: that is what makes compare-and-set
updates from racing clients have exactly one winner.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from orchestrator.devstack.mongowire import admin, reads, stats, writes
from orchestrator.devstack.mongowire.protocol import Document
from orchestrator.devstack.mongowire.request import CommandError, Request, translate
from orchestrator.devstack.mongowire.state import State

log = logging.getLogger(__name__)

Handler = Callable[[State, Request], Document]

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
    "serverStatus": stats.server_status,
    "serverstatus": stats.server_status,
}

_TRANSACTION_FIELDS = ("txnNumber", "startTransaction", "autocommit")


class Backend(State):
    """Runs commands on the shared ``State``."""

    def execute(self, body: Document, connection_id: int) -> Document:
        """Run one command and return its reply; failures become ``ok: 0`` replies.

        Every command is counted (``self.counters``, reported by ``serverStatus``).
        """
        name = next(iter(body), "")
        known = name in COMMANDS
        self.counters.record(name, body, known=known)
        try:
            return self._dispatch(body, connection_id)
        except CommandError as exc:
            reply = exc.to_reply()
        except Exception as exc:  # a stand-in must answer, never crash
            log.debug("command failed", exc_info=True)
            reply = translate(exc).to_reply()
        self.counters.failed(name, known=known)
        return reply

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
