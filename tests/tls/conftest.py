"""Fixtures of the TLS tests: a self-signed PKI made for this session (tests/tls/certs.py) and
one TLS server of each kind (tests/tls/servers.py), all on 127.0.0.1, stopped by PID.

- ``pki``               CA, server and client certificates, and a wrong CA.
- ``tls_redis``         a ``rediss://`` Redis (server certificate only).
- ``tls_redis_mutual``  a ``rediss://`` Redis that requires a client certificate.
- ``tls_mongo``         the Mongo wire stand-in speaking TLS only.
- ``tls_mongo_mutual``  the same, requiring a client certificate.
- ``tls_s3``            rclone's S3 server on https, bucket :data:`TLS_BUCKET`, with
                        ``.access_key`` / ``.secret_key``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.devstack import stack
from orchestrator.devstack.servers import S3ServerProcess, ServerProcess, start_mongo, start_s3
from tests.tls.certs import PKI, make_pki
from tests.tls.servers import start_redis_tls

TLS_BUCKET = "tls-bucket"


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def tls_redis(servers_dir: Path, redis_server: ServerProcess, pki: PKI) -> Iterator[ServerProcess]:
    server = start_redis_tls(servers_dir / "redis-tls", redis_server, pki)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tls_redis_mutual(servers_dir: Path, redis_server: ServerProcess,
                     pki: PKI) -> Iterator[ServerProcess]:
    server = start_redis_tls(servers_dir / "redis-mtls", redis_server, pki, client_auth=True)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tls_mongo(servers_dir: Path, pki: PKI) -> Iterator[ServerProcess]:
    server = start_mongo(servers_dir / "mongo-tls", cert_file=pki.server_cert,
                         key_file=pki.server_key)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tls_mongo_mutual(servers_dir: Path, pki: PKI) -> Iterator[ServerProcess]:
    server = start_mongo(servers_dir / "mongo-mtls", cert_file=pki.server_cert,
                         key_file=pki.server_key, client_ca_file=pki.ca)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tls_s3(servers_dir: Path, pki: PKI) -> Iterator[S3ServerProcess]:
    data_dir = servers_dir / "s3-tls"
    (data_dir / "buckets" / TLS_BUCKET).mkdir(parents=True)  # rclone: a directory per bucket
    access_key, secret_key = stack.new_credentials()
    server = start_s3(data_dir, access_key=access_key, secret_key=secret_key,
                      cert_file=pki.server_cert, key_file=pki.server_key)
    yield server
    server.stop()
