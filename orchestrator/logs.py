"""structlog configuration, called once by the CLI. Library code only calls ``get_logger``."""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal

import structlog
from pydantic_core import to_json
from structlog.typing import FilteringBoundLogger


def configure_logging(level: str = "info",
                      fmt: Literal["auto", "json", "console"] = "auto") -> None:
    """JSON lines when not on a terminal (or when asked), readable console output otherwise.

    Logs go to stderr so that stdout stays clean for command output.
    """
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = (structlog.processors.JSONRenderer(serializer=_json_line) if use_json
                     else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


def _json_line(event: Any, **_: Any) -> str:
    """One log line as JSON (pydantic-core's encoder; anything it does not know as ``str``)."""
    return to_json(event, fallback=str).decode()


def get_logger(name: str, **context: Any) -> FilteringBoundLogger:
    """A logger whose lines carry ``logger=name`` and ``context`` (``worker``, ``job_id`` …).

    It is built from the configuration current at the call, so call it after
    :func:`configure_logging` (the CLI imports library modules only after configuring).
    """
    logger: FilteringBoundLogger = structlog.get_logger().bind(logger=name, **context)
    return logger
