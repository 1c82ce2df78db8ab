"""The dev stack's environment: the keys it writes (:data:`STACK_ENV_KEYS`), the credentials,
the S3 client, and the 0600 ``KEY=VALUE`` env files (``DIR/env``, ``DIR/env.ROLE``,
``DIR/env.worker.NAME``), each with its role's own Redis URL."""

from __future__ import annotations

import os
import secrets
import shlex
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit, urlunsplit

from orchestrator.devstack import acl
from orchestrator.errors import OrchestratorError

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

BUCKET = "orchestrator"
S3_PREFIX = "dev"
REGION = "us-east-1"

REDIS_URL = "ORCHESTRATOR_REDIS_URL"
MONGO_URL = "ORCHESTRATOR_MONGO_URL"
S3_URL = "ORCHESTRATOR_S3_URL"
S3_ENDPOINT_URL = "ORCHESTRATOR_S3_ENDPOINT_URL"
AWS_ACCESS_KEY_ID = "AWS_ACCESS_KEY_ID"
AWS_SECRET_ACCESS_KEY = "AWS_SECRET_ACCESS_KEY"
AWS_DEFAULT_REGION = "AWS_DEFAULT_REGION"
AWS_RESPONSE_CHECKSUM_VALIDATION = "AWS_RESPONSE_CHECKSUM_VALIDATION"
AWS_REQUEST_CHECKSUM_CALCULATION = "AWS_REQUEST_CHECKSUM_CALCULATION"
DAEMON_KEY = "ORCHESTRATOR_DAEMON_KEY"
"""The daemon replicas' shared key (run secrets derive from it; only daemons need it)."""

STACK_ENV_KEYS: tuple[str, ...] = (
    REDIS_URL,
    MONGO_URL,
    S3_URL,
    S3_ENDPOINT_URL,
    AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY,
    AWS_DEFAULT_REGION,
    AWS_RESPONSE_CHECKSUM_VALIDATION,
    AWS_REQUEST_CHECKSUM_CALCULATION,
    DAEMON_KEY,
)
"""Every key written to ``DIR/env`` (and provided by the test fixture ``stack_env``)."""

SECRET_KEYS = frozenset({AWS_SECRET_ACCESS_KEY, DAEMON_KEY})
"""Keys whose values are never printed."""

ENV_FILE = "env"

DEFAULT_ROLE = acl.SUBMITTER
"""The role whose Redis URL ``DIR/env`` carries."""


class StackError(OrchestratorError):
    """The stack directory is unusable (corrupt state file, refusing to purge foreign files)."""


def stack_env(
    *,
    redis_url: str,
    mongo_url: str,
    s3_url: str,
    s3_endpoint_url: str,
    access_key: str,
    secret_key: str,
    daemon_key: str | None = None,
) -> dict[str, str]:
    """The environment that points the orchestrator and AWS clients at a set of servers
    (``daemon_key``: a new random one unless given)."""
    return {
        REDIS_URL: redis_url,
        MONGO_URL: mongo_url,
        S3_URL: s3_url,
        S3_ENDPOINT_URL: s3_endpoint_url,
        AWS_ACCESS_KEY_ID: access_key,
        AWS_SECRET_ACCESS_KEY: secret_key,
        AWS_DEFAULT_REGION: REGION,
        AWS_RESPONSE_CHECKSUM_VALIDATION: "when_required",
        AWS_REQUEST_CHECKSUM_CALCULATION: "when_required",
        DAEMON_KEY: daemon_key or secrets.token_urlsafe(32),
    }


def new_credentials() -> tuple[str, str]:
    """A random (access key, secret key) pair for the local S3 server."""
    return "DEV" + secrets.token_hex(8).upper(), secrets.token_urlsafe(30)


def s3_client(endpoint_url: str, access_key: str, secret_key: str) -> S3Client:
    """A boto3 client for the dev stack's S3 server (checksums only where S3 requires them,
    as rclone's server does not send the newer ones)."""
    import boto3  # noqa: PLC0415 - slow import, only needed here
    from botocore.config import Config  # noqa: PLC0415

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=REGION,
        config=Config(
            response_checksum_validation="when_required",
            request_checksum_calculation="when_required",
        ),
    )


def ensure_bucket(endpoint_url: str, access_key: str, secret_key: str, bucket: str) -> None:
    """Create ``bucket`` on the S3 server unless it already exists."""
    from botocore.exceptions import ClientError  # noqa: PLC0415

    client = s3_client(endpoint_url, access_key, secret_key)
    try:
        client.create_bucket(Bucket=bucket)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code not in ("BucketAlreadyExists", "BucketAlreadyOwnedByYou"):
            raise
    finally:
        client.close()


def write_env_file(path: Path, env: dict[str, str]) -> None:
    """Write shell-sourceable ``KEY=VALUE`` lines, readable by the owner only."""
    text = "".join(f"{key}={shlex.quote(value)}\n" for key, value in env.items())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(text)


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a file written by :func:`write_env_file`."""
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, raw = line.partition("=")
        if not sep:
            raise StackError(f"{path}: not a KEY=VALUE line: {line!r}")
        values = shlex.split(raw)
        env[key.strip()] = values[0] if values else ""
    return env


def without_daemon_key(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k != DAEMON_KEY}


def role_env(env: dict[str, str], user: str, redis_url: str) -> dict[str, str]:
    """A role's environment: its own Redis URL; the daemon key for the daemon alone."""
    own = env if user == acl.DAEMON else without_daemon_key(env)
    return {**own, REDIS_URL: redis_url}


def role_env_path(directory: Path, user: str) -> Path:
    """``DIR/env.ROLE`` for a fixed role, ``DIR/env.worker.NAME`` for user ``worker-NAME``."""
    if user.startswith(acl.WORKER_PREFIX):
        return directory / f"{ENV_FILE}.worker.{user.removeprefix(acl.WORKER_PREFIX)}"
    return directory / f"{ENV_FILE}.{user}"


def user_url(base_url: str, user: str, password: str) -> str:
    """``redis://user:password@host:port/db`` from a URL without credentials."""
    parts = urlsplit(base_url)
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{parts.netloc}"
    return urlunsplit(parts._replace(netloc=netloc))

