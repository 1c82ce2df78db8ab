"""The Mongo wire-protocol stand-in of the dev stack (:mod:`orchestrator.devstack.mongowire`):
its readiness probe (a ``ping`` command) and :func:`start_mongo`."""

from __future__ import annotations

import socket
import sys
from functools import partial
from pathlib import Path
from typing import Any

from orchestrator.devstack.process import HOST, ServerProcess, spawn, start_server

MONGOWIRE_MODULE = "orchestrator.devstack.mongowire"
"""Module run with ``python -m`` for the Mongo stand-in."""


def _mongo_ready(port: int, *, tls: bool = False, mutual: bool = False) -> bool:
    try:
        socket.create_connection((HOST, port), timeout=1.0).close()
    except OSError:
        return False
    if mutual:  # it would refuse a ping without a client certificate: listening is enough
        return True
    from pymongo import MongoClient  # noqa: PLC0415 - only needed once the port is open
    from pymongo.errors import PyMongoError  # noqa: PLC0415

    # is it up, not is it trusted: the TLS tests check trust with their own clients
    options: dict[str, Any] = {"tls": True, "tlsAllowInvalidCertificates": True} if tls else {}
    client: MongoClient[dict[str, object]] = MongoClient(
        HOST,
        port,
        serverSelectionTimeoutMS=1000,
        connectTimeoutMS=1000,
        socketTimeoutMS=1000,
        directConnection=True,
        **options,
    )
    try:
        client.admin.command("ping")
    except PyMongoError:
        return False
    finally:
        client.close()
    return True


def start_mongo(data_dir: Path, port: int | None = None, *, cert_file: Path | None = None,
                key_file: Path | None = None, client_ca_file: Path | None = None) -> ServerProcess:
    """Start the Mongo wire-protocol stand-in (``orchestrator.devstack.mongowire``); its data
    is kept in ``data_dir/mongo.json`` across a clean stop and restart. With ``cert_file`` and
    ``key_file`` (PEM) it speaks TLS only (clients need ``tls=true``); with ``client_ca_file``
    too it requires client certificates signed by that CA (mutual TLS)."""
    tls = ["--tls-cert-file", str(cert_file), "--tls-key-file", str(key_file)] if cert_file else []
    if client_ca_file is not None:
        tls += ["--tls-ca-file", str(client_ca_file)]

    def launch(chosen: int) -> ServerProcess:
        argv = [
            sys.executable, "-u", "-m", MONGOWIRE_MODULE,
            "--host", HOST,
            "--port", str(chosen),
            "--snapshot", str(data_dir / "mongo.json"),
            *tls,
        ]  # fmt: skip
        url = f"mongodb://{HOST}:{chosen}/"
        return spawn("mongo", argv, data_dir, port=chosen, url=url, marker=MONGOWIRE_MODULE)

    return start_server(port, launch, partial(_mongo_ready, tls=bool(tls),
                                              mutual=client_ca_file is not None))
