"""Helpers shared by the test suite (kept out of conftest.py so they can be imported)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.devstack import stack

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

TEST_BUCKET = "test-bucket"


def unique(prefix: str = "test") -> str:
    """A short unique name such as ``test-1a2b3c4d``."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def subprocess_env(stack_env: Mapping[str, str], **extra: str) -> dict[str, str]:
    """``os.environ`` + ``stack_env`` + ``extra``, without inherited ``ORCHESTRATOR_*`` settings
    (so a developer's own configuration never leaks into a test)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    env.update(stack_env)
    env.update(extra)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def run_cli(
    *args: str | Path, env: Mapping[str, str] | None = None, timeout_s: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Run ``orchestrator ARGS...`` through the real entry point; output is captured as text."""
    argv: Sequence[str] = [sys.executable, "-m", "orchestrator.cli.main", *map(str, args)]
    return subprocess.run(
        argv,
        env=dict(env) if env is not None else None,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def s3_client(s3_env: Mapping[str, str]) -> S3Client:
    """A boto3 S3 client for an ``s3_env`` dict (see the fixture in conftest.py)."""
    return stack.s3_client(s3_env["endpoint_url"], s3_env["access_key"], s3_env["secret_key"])
