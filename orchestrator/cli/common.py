"""Shared plumbing of the user-facing commands: settings, connections, errors, output.

Every command follows the same contract:

* exit 0 on success, 1 on failure (a server unreachable, a job that did not succeed …),
  2 on bad usage or bad input (invalid settings, an unreadable or invalid spec, an unknown job);
* a problem is one clear line on stderr, never a traceback;
* ``--json`` output goes to stdout, one JSON document (or one per line when streaming).

Connections use short timeouts so that an unreachable server is reported in seconds.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import anyio
import click
from rich.console import Console

from orchestrator.errors import (
    BusUnavailableError,
    ConfigError,
    JobNotFoundError,
    OrchestratorError,
    PermanentError,
    StorageError,
    StoreUnavailableError,
    error_gist,
)
from orchestrator.settings import Settings, load_settings

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from orchestrator.bus.keys import Keys
    from orchestrator.bus.streams import Bus
    from orchestrator.store.mongo import MongoJobStore

T = TypeVar("T")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2

CONNECT_TIMEOUT_S = 3.0
"""How long a command waits for Redis or MongoDB before saying it is unreachable."""

CLOSE_TIMEOUT_S = 2.0
"""Closing a connection never holds up the exit (or a Ctrl-C) longer than this."""


class Failure(click.ClickException):
    """Something failed (exit 1): a server is unreachable, a download did not verify …"""

    exit_code = EXIT_FAILURE


class BadInput(click.ClickException):
    """The user's input is wrong (exit 2): invalid spec or settings, unknown job id …"""

    exit_code = EXIT_BAD_INPUT


json_option = click.option(
    "--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout."
)


def cli_settings() -> Settings:
    """Settings from the environment; invalid settings are bad input (exit 2)."""
    try:
        return load_settings()
    except ConfigError as exc:
        raise BadInput(str(exc)) from exc


def redact(url: str) -> str:
    """A URL without its password, fit to print."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable url>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def keys_for(settings: Settings) -> Keys:
    from orchestrator.bus.keys import Keys  # noqa: PLC0415

    return Keys(namespace=settings.namespace, event_shards=settings.event_shards)


def bus_for(redis: Redis, settings: Settings) -> Bus:
    """The producer side of the bus (submissions, cancels) on ``redis``, as ``settings`` say."""
    from orchestrator.bus.streams import Bus  # noqa: PLC0415

    return Bus(redis, keys_for(settings), maxlen=settings.stream_maxlen)


def mongo_unreachable(settings: Settings, exc: BaseException) -> Failure:
    return Failure(
        f"cannot reach MongoDB at {redact(settings.mongo_url)} (ORCHESTRATOR_MONGO_URL): "
        f"{error_gist(exc)}"
    )


def redis_unreachable(settings: Settings, exc: BaseException) -> Failure:
    return Failure(
        f"cannot reach Redis at {redact(settings.redis_url)} (ORCHESTRATOR_REDIS_URL): "
        f"{error_gist(exc)}"
    )


@asynccontextmanager
async def _checked(
    client: T,
    *,
    ping: Callable[[], Awaitable[object]],
    close: Callable[[], Awaitable[object]],
    unreachable: Callable[[BaseException], Failure],
    timeout_s: float,
) -> AsyncIterator[T]:
    """``client`` once ``ping()`` answered within ``timeout_s`` (else ``unreachable(exc)``);
    closed afterwards, without letting a dead connection hold up the exit."""
    try:
        try:
            with anyio.fail_after(timeout_s + 1):
                await ping()
        except Exception as exc:
            raise unreachable(exc) from exc
        yield client
    finally:
        with anyio.move_on_after(CLOSE_TIMEOUT_S, shield=True):
            with contextlib.suppress(Exception):  # closing a dead connection may fail
                await close()


def open_store(
    settings: Settings, *, timeout_s: float = CONNECT_TIMEOUT_S
) -> AbstractAsyncContextManager[MongoJobStore]:
    """The job store, checked with a ``ping`` first so that an unreachable server fails fast."""
    from orchestrator.store.mongo import connect_mongo  # noqa: PLC0415

    store = connect_mongo(settings.mongo_url, settings.mongo_db, timeout_ms=int(timeout_s * 1000))
    return _checked(
        store,
        ping=lambda: store.db.command("ping"),
        close=store.close,
        unreachable=lambda exc: mongo_unreachable(settings, exc),
        timeout_s=timeout_s,
    )


def open_redis(
    settings: Settings, *, timeout_s: float = CONNECT_TIMEOUT_S
) -> AbstractAsyncContextManager[Redis]:
    """A Redis client, checked with a ``PING`` first (short connect timeout)."""
    from redis.asyncio import Redis  # noqa: PLC0415

    client: Redis = Redis.from_url(
        settings.redis_url,
        password=settings.redis_password_plain,
        socket_connect_timeout=timeout_s,
        decode_responses=False,
    )
    return _checked(
        client,
        ping=client.ping,
        close=client.aclose,
        unreachable=lambda exc: redis_unreachable(settings, exc),
        timeout_s=timeout_s,
    )


def run(settings: Settings, main: Callable[[], Awaitable[T]]) -> T:
    """Run an async command body, turning our errors into one-line messages and exit codes.

    Errors inside task groups are unwrapped to their first leaf; anything that is not ours
    (a bug) propagates unchanged.
    """

    try:
        return anyio.run(main)
    except BaseExceptionGroup as group:
        leaf = _leaf(group)
        translated = translate_error(settings, leaf)
        if translated is not None:
            raise translated from leaf
        raise leaf from group
    except Exception as exc:
        translated = translate_error(settings, exc)
        if translated is None:
            raise
        raise translated from exc


def run_interruptible(settings: Settings, main: Callable[[], Awaitable[T]]) -> T:
    """Like :func:`run`, but SIGINT/SIGTERM cancel ``main`` and then raise KeyboardInterrupt.

    The cancellation goes through an anyio cancel scope, which is level-triggered: a library
    that swallows one cancellation (as a retry loop around a socket read may) is cancelled
    again at its next await, so Ctrl-C always ends a long-running command.
    """

    async def guarded() -> T:
        interrupted: list[int] = []
        result: list[T] = []
        async with anyio.create_task_group() as tg:

            async def on_signals() -> None:
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for signum in signals:
                        interrupted.append(signum)
                        tg.cancel_scope.cancel()
                        return

            async def work() -> None:
                result.append(await main())
                tg.cancel_scope.cancel()

            tg.start_soon(on_signals)
            tg.start_soon(work)
        if interrupted or not result:
            name = signal.Signals(interrupted[0]).name if interrupted else "cancelled"
            raise KeyboardInterrupt(name)
        return result[0]

    return run(settings, guarded)


def translate_error(settings: Settings, exc: BaseException) -> click.ClickException | None:
    """The message and exit code for one of our errors (None: not ours, let it propagate)."""
    if isinstance(exc, click.ClickException):
        return exc
    if isinstance(exc, JobNotFoundError):
        return BadInput(str(exc))
    if isinstance(exc, StoreUnavailableError):
        return mongo_unreachable(settings, exc)
    if isinstance(exc, BusUnavailableError):
        return redis_unreachable(settings, exc)
    if isinstance(exc, StorageError):
        return Failure(f"object store {settings.s3_url}: {error_gist(exc)}")
    if isinstance(exc, PermanentError):
        return BadInput(error_gist(exc))
    if isinstance(exc, OrchestratorError):
        return Failure(error_gist(exc))
    if _is_redis_error(exc):
        name = type(exc).__name__
        if "Connection" in name or "Timeout" in name or "BusyLoading" in name:
            return redis_unreachable(settings, exc)
        return Failure(f"Redis refused a command: {error_gist(exc)}")
    if isinstance(exc, ConnectionError | TimeoutError):
        return Failure(error_gist(exc))
    return None


def _is_redis_error(exc: BaseException) -> bool:
    return type(exc).__module__.startswith("redis.")


def _leaf(group: BaseExceptionGroup[Any]) -> BaseException:
    """The first exception of a (nested) group that is not itself a group."""
    first: BaseException = group.exceptions[0]
    return _leaf(first) if isinstance(first, BaseExceptionGroup) else first


def jsonable(value: Any) -> Any:
    """Datetimes as ISO 8601 strings, enums as their values, recursively."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    return value


def echo_json(value: Any, *, lines: bool = False) -> None:
    """Print one JSON document (indented) or one compact line (``lines``), flushed."""
    if lines:
        text = json.dumps(jsonable(value), separators=(",", ":"), sort_keys=True)
    else:
        text = json.dumps(jsonable(value), indent=2, sort_keys=True)
    click.echo(text)
    sys.stdout.flush()


def console(*, stderr: bool = False) -> Console:
    """A rich console; wide enough off a terminal that ids are never cut."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else 160
    return Console(file=stream, width=width, soft_wrap=False, highlight=False)


def warn(message: str) -> None:
    click.echo(message, err=True)
