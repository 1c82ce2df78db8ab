"""A rich console that leaves a closed stdout to the CLI's entry point.

Rich's own reaction to a broken pipe is ``SystemExit(1)``; ``orchestrator … | head -1`` must end
with exit 0 like any Unix filter whose output is no longer wanted, whichever way the command
prints (click, JSON lines or rich). So the console stops writing and hands the
``BrokenPipeError`` on, and ``orchestrator.cli.main`` ends the command quietly.
"""

from __future__ import annotations

import errno

from rich.console import Console


class QuietPipeConsole(Console):
    """A :class:`rich.console.Console` whose broken pipe is a ``BrokenPipeError``, not an exit."""

    def on_broken_pipe(self) -> None:
        self.quiet = True  # nothing more to write
        raise BrokenPipeError(errno.EPIPE, "stdout closed by its reader")
