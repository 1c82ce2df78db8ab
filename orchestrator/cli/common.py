"""The contract of the user-facing commands: exit codes, the errors that carry them, settings.

Every command follows the same contract:

* exit 0 on success, 1 on failure (a server unreachable, a job that did not succeed …),
  2 on bad usage or bad input (invalid settings, an unreadable or invalid spec, an unknown job);
* a problem is one clear line on stderr, never a traceback;
* ``--json`` output goes to stdout, one JSON document (or one per line when streaming).

Connections (:mod:`~orchestrator.cli.connect`) use short timeouts so that an unreachable server
is reported in seconds; :mod:`~orchestrator.cli.running` turns errors into these exit codes and
:mod:`~orchestrator.cli.output` prints.
"""

from __future__ import annotations

import click

from orchestrator.errors import ConfigError
from orchestrator.settings import Settings, load_settings

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2


class Failure(click.ClickException):
    """Something failed (exit 1): a server is unreachable, a download did not verify …"""

    exit_code = EXIT_FAILURE


class BadInput(click.ClickException):
    """The user's input is wrong (exit 2): invalid spec or settings, unknown job id …"""

    exit_code = EXIT_BAD_INPUT


def cli_settings() -> Settings:
    """Settings from the environment; invalid settings are bad input (exit 2)."""
    try:
        return load_settings()
    except ConfigError as exc:
        raise BadInput(str(exc)) from exc


def with_metrics_addr(settings: Settings, address: str | None) -> Settings:
    """``settings`` with ``--metrics-addr`` (when given) in place of
    ``ORCHESTRATOR_METRICS_ADDR``; a malformed address is bad input (exit 2)."""
    if address is None:
        return settings
    from orchestrator.health.address import parse_address  # noqa: PLC0415

    try:
        parse_address(address)
    except ValueError as exc:
        raise BadInput(f"--metrics-addr: {exc}") from None
    return settings.model_copy(update={"metrics_addr": address})
