"""Operation counters and the ``serverStatus`` command, shaped like a real ``mongod``'s.

So that a benchmark or a test can count what a client asked of the database through a real
MongoDB command (and the same code runs against a real server), the stand-in keeps the two
counter families of ``serverStatus`` that say how much work was requested:

* ``opcounters`` {insert, query, update, delete, getmore, command}, counted the way a
  ``mongod`` counts them: ``insert`` per document of an ``insert`` command, ``update`` and
  ``delete`` per statement of an ``update`` / ``delete`` command, ``query`` per ``find``,
  ``getmore`` per ``getMore``, and ``command`` for every other command (the handshake, ``ping``
  and ``serverStatus`` itself included). Counted on receipt, failed operations too.
* ``metrics.commands.<name>`` {total, failed}: one per command message received, that is one
  per round trip, whatever the batch size; an unknown command counts under ``<UNKNOWN>``.

Everything else ``serverStatus`` returns here is a few identifying fields (``host``,
``version``, ``process``, ``pid``, ``uptime``, ``localTime``, ``connections``).
"""

from __future__ import annotations

import datetime
import os
import socket
import time
from typing import TYPE_CHECKING

import bson

from orchestrator.devstack.mongowire.admin import SERVER_VERSION
from orchestrator.devstack.mongowire.counters import OPCOUNTER_NAMES
from orchestrator.devstack.mongowire.protocol import Document

if TYPE_CHECKING:
    from orchestrator.devstack.mongowire.request import Request
    from orchestrator.devstack.mongowire.state import State

PROCESS_NAME = "mongowire"


def server_status(backend: State, req: Request) -> Document:
    """``serverStatus``: identification, ``opcounters`` and ``metrics.commands``."""
    counters = backend.counters
    uptime = time.monotonic() - counters.started
    return {
        "host": socket.gethostname(),
        "version": SERVER_VERSION,
        "process": PROCESS_NAME,
        "pid": bson.Int64(os.getpid()),
        "uptime": float(int(uptime)),
        "uptimeMillis": bson.Int64(int(uptime * 1000)),
        "localTime": datetime.datetime.now(datetime.UTC).replace(tzinfo=None),
        "connections": {"totalCreated": bson.Int64(backend.connections_created)},
        "opcounters": {name: bson.Int64(counters.ops[name]) for name in OPCOUNTER_NAMES},
        "metrics": {"commands": counters.metrics_commands()},
        "ok": 1.0,
    }
