"""The Mongo wire-protocol stand-in of the dev stack (:mod:`orchestrator.devstack.mongowire`):
its readiness probe (a ``ping`` command) and :func:`start_mongo`."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

from orchestrator.devstack.process import HOST, ServerProcess, spawn, start_server

MONGOWIRE_MODULE = "orchestrator.devstack.mongowire"
"""Module run with ``python -m`` for the Mongo stand-in."""


def _mongo_ready(port: int) -> bool:
    try:
        socket.create_connection((HOST, port), timeout=1.0).close()
    except OSError:
        return False
    from pymongo import MongoClient  # noqa: PLC0415 - only needed once the port is open
    from pymongo.errors import PyMongoError  # noqa: PLC0415

    client: MongoClient[dict[str, object]] = MongoClient(
        HOST,
        port,
        serverSelectionTimeoutMS=1000,
        connectTimeoutMS=1000,
        socketTimeoutMS=1000,
        directConnection=True,
    )
    try:
        client.admin.command("ping")
    except PyMongoError:
        return False
    finally:
        client.close()
    return True


def start_mongo(data_dir: Path, port: int | None = None) -> ServerProcess:
    """Start the Mongo wire-protocol stand-in (``orchestrator.devstack.mongowire``); its data
    is kept in ``data_dir/mongo.json`` across a clean stop and restart."""
    def launch(chosen: int) -> ServerProcess:
        argv = [
            sys.executable, "-u", "-m", MONGOWIRE_MODULE,
            "--host", HOST,
            "--port", str(chosen),
            "--snapshot", str(data_dir / "mongo.json"),
        ]  # fmt: skip
        url = f"mongodb://{HOST}:{chosen}/"
        return spawn("mongo", argv, data_dir, port=chosen, url=url, marker=MONGOWIRE_MODULE)

    return start_server(port, launch, _mongo_ready)
