"""Running a command body: our errors become one-line messages and exit codes; SIGINT/SIGTERM
cancel a long-running command cleanly."""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import click

from orchestrator.cli.common import EXIT_FAILURE, BadInput, Failure
from orchestrator.cli.connect import mongo_unreachable, redis_unreachable
from orchestrator.cli.output import warn
from orchestrator.errors import (
    BusUnavailableError,
    JobNotFoundError,
    OrchestratorError,
    PermanentError,
    StorageError,
    StoreUnavailableError,
    error_gist,
)
from orchestrator.settings import Settings

T = TypeVar("T")


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


def run_waiting(settings: Settings, main: Callable[[], Awaitable[int]], wait: bool) -> int:
    """Run a command body; with ``--wait``, Ctrl-C ends the wait (exit 1, the job goes on)."""
    if not wait:
        return run(settings, main)
    try:
        return run_interruptible(settings, main)
    except KeyboardInterrupt:
        warn("interrupted: stopped waiting (the job itself goes on)")
        return EXIT_FAILURE


def translate_error(settings: Settings, exc: BaseException) -> click.ClickException | None:
    """The message and exit code for one of our errors (None: not ours, let it propagate)."""
    if isinstance(exc, BrokenPipeError):  # stdout's reader went away: the CLI's entry point
        return None                       # ends quietly with exit 0 (cli.main.LazyGroup)
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
