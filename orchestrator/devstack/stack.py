"""The local development stack: Redis (AOF on), S3 (rclone) and the Mongo stand-in in one directory.

Layout of the stack directory::

    DIR/env           KEY=VALUE lines for the orchestrator and AWS clients (mode 0600: a secret);
                      its ORCHESTRATOR_REDIS_URL is the *submitter*'s (the CLI: submit, cancel,
                      status, watch)
    DIR/env.daemon    the same keys, ORCHESTRATOR_REDIS_URL the daemon's
    DIR/env.submitter, DIR/env.watcher, DIR/env.admin   likewise for those roles
    DIR/env.worker.NAME   likewise for worker NAME (``up(workers=…)``, :func:`add_workers`)
    DIR/stack.json    pids, ports and urls (no credentials) of the running servers, the Redis
                      namespace the ACL covers and the workers that have users
    DIR/redis/users.acl   the Redis ``aclfile`` (passwords as SHA-256 hashes only)
    DIR/redis/ s3/ mongo/   each server's data and log

Redis runs with ACL users per role (:mod:`orchestrator.devstack.acl`); the default user is off.
Passwords are random, made at a directory's first start, written only to the 0600 env files.
Every directory of the stack is 0700 and every file 0600 (the servers run with umask 077).

:func:`up` is idempotent (a running stack is left alone, a half-dead one is cleaned up first) and
restarts a stopped stack in place: the same ports, credentials and data, read back from the env
files (:mod:`orchestrator.devstack.previous`), so processes left running reconnect; a remembered
port another process took is an error (:class:`PortTakenError`), never a silent move.
:func:`down` stops exactly the recorded pids, after checking each is still the process we started.
:func:`~orchestrator.devstack.status.stack_status` (``dev status``) reports what runs where.

This module is the public face; the code lives in :mod:`orchestrator.devstack.envfiles` (the keys,
credentials and env files) and :mod:`orchestrator.devstack.lifecycle` (:class:`DevStack`,
``stack.json``, :func:`up`, :func:`add_workers`, :func:`down`).
"""

from __future__ import annotations

from orchestrator.devstack.envfiles import (
    AWS_ACCESS_KEY_ID,
    AWS_DEFAULT_REGION,
    AWS_REQUEST_CHECKSUM_CALCULATION,
    AWS_RESPONSE_CHECKSUM_VALIDATION,
    AWS_SECRET_ACCESS_KEY,
    BUCKET,
    DAEMON_KEY,
    DEFAULT_ROLE,
    ENV_FILE,
    MONGO_URL,
    REDIS_URL,
    REGION,
    S3_ENDPOINT_URL,
    S3_PREFIX,
    S3_URL,
    SECRET_KEYS,
    STACK_ENV_KEYS,
    StackError,
    ensure_bucket,
    new_credentials,
    read_env_file,
    role_env,
    role_env_path,
    s3_client,
    stack_env,
    user_url,
    without_daemon_key,
    write_env_file,
)
from orchestrator.devstack.lifecycle import (
    ACL_FILE,
    DEFAULT_DIR,
    DEFAULT_NAMESPACE,
    STACK_FILE,
    DevStack,
    UpResult,
    add_workers,
    down,
    up,
)
from orchestrator.devstack.previous import PortTakenError
from orchestrator.devstack.process import ServerStartError
from orchestrator.devstack.status import stack_status

__all__ = [
    "ACL_FILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_DEFAULT_REGION",
    "AWS_REQUEST_CHECKSUM_CALCULATION",
    "AWS_RESPONSE_CHECKSUM_VALIDATION",
    "AWS_SECRET_ACCESS_KEY",
    "BUCKET",
    "DAEMON_KEY",
    "DEFAULT_DIR",
    "DEFAULT_NAMESPACE",
    "DEFAULT_ROLE",
    "ENV_FILE",
    "MONGO_URL",
    "REDIS_URL",
    "REGION",
    "S3_ENDPOINT_URL",
    "S3_PREFIX",
    "S3_URL",
    "SECRET_KEYS",
    "STACK_ENV_KEYS",
    "STACK_FILE",
    "DevStack",
    "PortTakenError",
    "ServerStartError",
    "StackError",
    "UpResult",
    "add_workers",
    "down",
    "ensure_bucket",
    "new_credentials",
    "read_env_file",
    "role_env",
    "role_env_path",
    "s3_client",
    "stack_env",
    "stack_status",
    "up",
    "user_url",
    "without_daemon_key",
    "write_env_file",
]
