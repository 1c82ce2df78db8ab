"""What the commands print: JSON on stdout (one document, or one line per change), rich tables,
and one-line problems on stderr."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from enum import Enum
from typing import Any

import click
from rich.console import Console

json_option = click.option(
    "--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout."
)


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
