"""A MongoDB wire-protocol stand-in backed by mongomock — for local development and tests only.

No real MongoDB can be installed where the test suite and the local stack run, yet the daemon,
the workers and the tests are separate processes that must share one database. This package
is a small asyncio (anyio) TCP server that speaks enough of the wire protocol for the
unmodified pymongo driver (``MongoClient`` and ``AsyncMongoClient``) and executes every command
on one in-process ``mongomock.MongoClient``. Production uses a real MongoDB.

It presents itself as a standalone MongoDB 7.0 (wire version 21), without compression or
authentication. Messages: the ``OP_QUERY`` handshake (answered with ``OP_REPLY``) and
``OP_MSG`` (body and document-sequence sections, checksum and moreToCome flags).

Commands: hello/isMaster, ping, buildInfo, connectionStatus, endSessions, serverStatus (only
``opcounters`` and ``metrics.commands``, see ``stats``); insert, update,
delete (ordered and unordered batches, per-statement ``writeErrors``, duplicate keys reported
as code 11000), findAndModify; find, getMore, killCursors (real cursors and batches),
aggregate, count, distinct; createIndexes (unique, sparse, partialFilterExpression),
listIndexes, dropIndexes; create, drop, renameCollection, listCollections; dropDatabase,
listDatabases. Anything else is answered with ``CommandNotFound`` (code 59).

Every command runs synchronously on the event loop, so each is atomic with respect to all
other connections (compare-and-set updates have exactly one winner).

Not supported: transactions, change streams, TTL expiry (``expireAfterSeconds`` is stored but
never enforced), ``arrayFilters``, collation, views, capped and time-series collections,
tailable cursors, explain, and anything mongomock itself does not implement. Query and
update semantics are mongomock's, which differ from a real server in corner cases.

Run it with ``python -m orchestrator.devstack.mongowire --host 127.0.0.1 --port 0
[--snapshot PATH]``; it prints ``ready mongodb://HOST:PORT/`` once listening. In-process, use
``port = await task_group.start(serve, "127.0.0.1", 0)``.
"""

from orchestrator.devstack.mongowire.backend import Backend
from orchestrator.devstack.mongowire.server import serve

__all__ = ["Backend", "serve"]
