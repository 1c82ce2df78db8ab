"""Misspelt ``ORCHESTRATOR_*`` environment variables: a warning on stderr naming the closest
setting, instead of silence.

Why: pydantic-settings ignores a variable it has no field for, so ``ORCHESTRATOR_REDIS_ULR``
leaves the default Redis URL in force and the operator debugging "connection refused on 6379"
never learns why. The warning names the variable and the likely setting, never the value (it may
be a password or a key), and each name is reported once per process however often settings are
loaded.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Iterable, Mapping
from typing import TextIO

PREFIX = "ORCHESTRATOR_"

NOT_SETTINGS = frozenset({
    "ORCHESTRATOR_DEV_DIR",  # `orchestrator dev` and `demo`: the stack directory (a CLI option)
    "ORCHESTRATOR_WORKER_ROLE",  # deploy/systemd: the worker unit's --role
    "ORCHESTRATOR_UI_TOKEN",  # `orchestrator ui`: the dashboard's access token
    "ORCHESTRATOR_UI_TOKEN_FILE",  # `orchestrator ui`: a file holding it
})
"""``ORCHESTRATOR_*`` variables that are read elsewhere than the settings, and so are known."""

_warned: set[str] = set()


def unknown_variable_warnings(environ: Mapping[str, str], setting_names: Iterable[str]
                              ) -> list[str]:
    """One line per ``ORCHESTRATOR_*`` name in ``environ`` that is no setting (pydantic-settings
    matches names case-insensitively, so this does too), with the closest known name if any is
    close. Only names appear in the lines, never values."""
    known = {PREFIX + name.upper() for name in setting_names} | NOT_SETTINGS
    suffixes = sorted(k.removeprefix(PREFIX) for k in known)  # the shared prefix says nothing
    lines = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(PREFIX) or upper in known:
            continue
        close = difflib.get_close_matches(upper.removeprefix(PREFIX), suffixes, n=1, cutoff=0.6)
        hint = (f"; did you mean {PREFIX}{close[0]}?" if close
                else " (no setting has a similar name)")
        lines.append(f"warning: {name} is not an orchestrator setting and is ignored{hint}")
    return lines


def warn_unknown_variables(environ: Mapping[str, str], setting_names: Iterable[str],
                           stream: TextIO | None = None) -> None:
    """Print :func:`unknown_variable_warnings` to ``stream`` (stderr), each name once per
    process."""
    out = sys.stderr if stream is None else stream
    for line in unknown_variable_warnings(environ, setting_names):
        name = line.split()[1]
        if name not in _warned:
            _warned.add(name)
            print(line, file=out, flush=True)


__all__ = ["NOT_SETTINGS", "PREFIX", "unknown_variable_warnings", "warn_unknown_variables"]
