"""``orchestrator daemon``: run one daemon replica until SIGTERM/SIGINT.

Settings come from ``ORCHESTRATOR_*`` (see ``orchestrator.settings``); invalid settings exit 2.
If Redis or MongoDB are unreachable at startup the daemon logs each failed attempt and keeps
retrying with backoff for ``--startup-timeout`` seconds (default 60; 0 = forever), then exits
1 with a clear message. After startup, outages are ridden out: batches wait with backoff and
are acknowledged only once written. SIGTERM/SIGINT drain (exit 0); a second signal stops at
once (unacknowledged entries are read again by the next daemon).

The daemon key (``ORCHESTRATOR_DAEMON_KEY`` or ``ORCHESTRATOR_DAEMON_KEY_FILE``, the same on
every replica) is required: without it the command exits 2 before connecting to anything.
"""

from __future__ import annotations

import sys

import anyio
import click

from orchestrator.cli.common import EXIT_FAILURE, EXIT_OK, BadInput, cli_settings
from orchestrator.cli.connect import redact
from orchestrator.errors import ConfigError
from orchestrator.logs import configure_logging, get_logger
from orchestrator.settings import MEMORY_STORE, Settings

NO_KEY = ("no daemon key: set ORCHESTRATOR_DAEMON_KEY (or ORCHESTRATOR_DAEMON_KEY_FILE) to "
          "the same secret of at least 16 bytes on every daemon replica, e.g. the output of "
          "`python -c 'import secrets; print(secrets.token_urlsafe(32))'` "
          "(`orchestrator dev up` writes one into its env file)")


def daemon_key(settings: Settings) -> bytes:
    """The daemon key, or bad input (exit 2) naming what to set."""
    try:
        key = settings.daemon_key_bytes()
    except ConfigError as exc:
        raise BadInput(str(exc)) from exc
    if key is None:
        raise BadInput(NO_KEY)
    return key


async def _main(settings: Settings, consumer: str | None, startup_timeout_s: float,
                batch_size: int | None) -> int:
    from orchestrator.bus.wire import connect_redis  # noqa: PLC0415 - keep --help fast
    from orchestrator.daemon import Daemon, DaemonOptions, serve  # noqa: PLC0415
    from orchestrator.store import JobStore, MemoryJobStore, connect_mongo  # noqa: PLC0415

    log = get_logger("orchestrator.cli.daemon")
    redis = connect_redis(settings.redis_url, password=settings.redis_password_plain)
    store: JobStore = (MemoryJobStore() if settings.mongo_url == MEMORY_STORE
                       else connect_mongo(settings.mongo_url, settings.mongo_db))
    options = DaemonOptions.from_settings(settings, consumer=consumer, batch_size=batch_size,
                                          startup_timeout_s=startup_timeout_s)
    daemon = Daemon(store, redis, options)
    try:
        async with anyio.create_task_group() as tg:
            try:
                with anyio.fail_after(startup_timeout_s if startup_timeout_s > 0 else None):
                    await tg.start(serve, daemon)
            except TimeoutError:
                failure = (daemon.retry.last_failure
                           or f"{daemon.retry.last_attempt or 'startup'}: no answer yet")
                redis_url, mongo_url = redact(settings.redis_url), redact(settings.mongo_url)
                log.warning("startup timed out", waited_s=startup_timeout_s, last_error=failure,
                            redis=redis_url, mongo=mongo_url)
                click.echo(
                    f"orchestrator daemon: not ready after {startup_timeout_s:g}s "
                    f"(Redis {redis_url}, MongoDB {mongo_url}); last error: {failure[:300]}",
                    err=True)
                tg.cancel_scope.cancel()
                return EXIT_FAILURE
    finally:
        with anyio.CancelScope(shield=True):
            await redis.aclose()
            await store.close()
    return EXIT_OK


@click.command(name="daemon")
@click.option("--consumer", metavar="NAME", default=None,
              help="Stable consumer name of this replica (default: ORCHESTRATOR_CONSUMER_NAME, "
                   "else host-pid). Reuse it after a restart to drain what was in flight.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default=None, help="Log level (default: ORCHESTRATOR_LOG_LEVEL or info).")
@click.option("--startup-timeout", "startup_timeout_s", type=float, default=60.0,
              show_default=True,
              help="Seconds to keep retrying unreachable Redis/MongoDB at startup (0: forever).")
@click.option("--batch-size", type=click.IntRange(1, 10_000), default=None,
              help="Events per read (default: ORCHESTRATOR_BATCH_SIZE).")
def daemon(consumer: str | None, log_level: str | None, startup_timeout_s: float,
           batch_size: int | None) -> None:
    """Run the orchestrator daemon (intake, dispatch, events, deadlines) until SIGTERM."""
    settings = cli_settings()  # invalid settings: one line on stderr, exit 2
    daemon_key(settings)  # none configured: one line on stderr, exit 2
    configure_logging(log_level or settings.log_level, settings.log_format)
    from orchestrator.daemon.tuning import tune_gc  # noqa: PLC0415

    tune_gc()
    code = anyio.run(_main, settings, consumer, startup_timeout_s, batch_size)
    sys.exit(code)
