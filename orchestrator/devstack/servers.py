"""Start and stop real server processes on 127.0.0.1: Redis (Valkey), S3 (rclone), a Mongo stand-in.

Theory of operation: each ``start_*`` function picks a free port (unless given one), spawns the
server in its own session with its log in ``data_dir``, and blocks until the server answers a
real request (Redis ``PING``, an HTTP response from S3, a ``ping`` command over the Mongo wire).
If the process dies or does not answer in time, :class:`ServerStartError` carries the tail of
its log. Processes are only ever stopped by PID; never by name.

This module is the public face; the code lives in :mod:`orchestrator.devstack.process` (generic
process management), :mod:`orchestrator.devstack.private` (0700 directories, 0600 files) and one
module per server: :mod:`~orchestrator.devstack.redis_server`,
:mod:`~orchestrator.devstack.s3_server`, :mod:`~orchestrator.devstack.mongo_server`.
"""

from __future__ import annotations

from orchestrator.devstack.mongo_server import MONGOWIRE_MODULE, start_mongo
from orchestrator.devstack.private import PRIVATE_UMASK, private_dir, private_file, tighten
from orchestrator.devstack.process import (
    HOST,
    START_TIMEOUT_S,
    ServerProcess,
    ServerStartError,
    cmdline_matches,
    free_port,
    log_tail,
    pid_alive,
    pid_cmdline,
    wait_pid_exit,
    wait_until_ready,
)
from orchestrator.devstack.redis_server import redis_server_binary, start_redis
from orchestrator.devstack.s3_server import S3ServerProcess, rclone_binary, start_s3

__all__ = [
    "HOST",
    "MONGOWIRE_MODULE",
    "PRIVATE_UMASK",
    "START_TIMEOUT_S",
    "S3ServerProcess",
    "ServerProcess",
    "ServerStartError",
    "cmdline_matches",
    "free_port",
    "log_tail",
    "pid_alive",
    "pid_cmdline",
    "private_dir",
    "private_file",
    "rclone_binary",
    "redis_server_binary",
    "start_mongo",
    "start_redis",
    "start_s3",
    "tighten",
    "wait_pid_exit",
    "wait_until_ready",
]
