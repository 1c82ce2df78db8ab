"""What the commands print: JSON on stdout (one document, or one line per change), rich tables,
and one-line problems on stderr."""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Any, TypedDict

import click

from orchestrator.core import jsonable

if TYPE_CHECKING:
    from rich.console import Console

json_option = click.option(
    "--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout."
)


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
    from orchestrator.cli.quiet_console import QuietPipeConsole  # noqa: PLC0415 - rich: slow

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else 160
    return QuietPipeConsole(file=stream, width=width, soft_wrap=False, highlight=False)


class ScreenFit(TypedDict, total=False):
    max_rows: int
    width: int


def screen_fit(out: Console) -> ScreenFit:
    """On a terminal, the job view's bounds (its height and width: the job fits one screen);
    off a terminal nothing, so a file or a pipe gets the full view."""
    if not out.is_terminal:
        return {}
    return {"max_rows": out.size.height, "width": out.size.width}


def warn(message: str) -> None:
    click.echo(message, err=True)


def silence_stdout() -> None:
    """Point stdout at ``/dev/null``: its reader went away (``… | head -1``), so what is still
    buffered, or printed later, goes nowhere instead of failing at exit with "Broken pipe"."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


def flush_stdout() -> None:
    """Flush stdout; if its reader went away, silence it (see :func:`silence_stdout`)."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        silence_stdout()
