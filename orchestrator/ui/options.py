"""How the dashboard is served: address, access token, whether it may cancel jobs.

The rules live here, not in the command, so that every way of starting the dashboard (``ui``,
``dev up``, ``demo --ui``, the tests) refuses the same unsafe combinations: bound off
loopback without a token (anyone who reaches the port would read every job), or able to
cancel jobs without a token (a cross-site page could not forge the token, but any local user
could). A token comes from ``--token-file``, ``ORCHESTRATOR_UI_TOKEN_FILE`` or
``ORCHESTRATOR_UI_TOKEN``, or is made for this run (``--new-token``).
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import ConfigError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8710
TOKEN_ENV = "ORCHESTRATOR_UI_TOKEN"
TOKEN_FILE_ENV = "ORCHESTRATOR_UI_TOKEN_FILE"
MIN_TOKEN_CHARS = 16
MAX_TOKEN_CHARS = 512

HOW_TO_GIVE_A_TOKEN = (
    f"give one with --token-file PATH, {TOKEN_FILE_ENV}=PATH or {TOKEN_ENV}=TOKEN "
    f"(at least {MIN_TOKEN_CHARS} characters), or make one for this run with --new-token"
)


@dataclass(frozen=True, slots=True)
class UiOptions:
    """What ``create_app`` and the server need to know (``token`` None: no token asked)."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    token: str | None = None
    allow_cancel: bool = False
    token_generated: bool = False
    """The token was made for this run (so the printed URL may carry it)."""

    def __repr__(self) -> str:  # never show the token, even in a traceback
        return (f"UiOptions(host={self.host!r}, port={self.port}, "
                f"token={'***' if self.token else None}, allow_cancel={self.allow_cancel})")

    @property
    def url(self) -> str:
        """The dashboard's address (no token in it)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def startup_url(self) -> str:
        """The URL to print at start: with ``?token=`` only for a token made for this run (a
        token from a file or the environment is the operator's, never printed)."""
        if self.token and self.token_generated:
            return f"{self.url}login?token={self.token}"
        return self.url


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and ``localhost``; anything else (0.0.0.0, a name) is not."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_token(path: Path) -> str:
    """The token in ``path`` (surrounding whitespace ignored); ``ConfigError`` if unreadable."""
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the dashboard token file {path}: "
                          f"{getattr(exc, 'strerror', None) or exc}") from exc
    return text.strip()


def resolve_token(token_file: Path | None, environ: Mapping[str, str], *,
                  new_token: bool = False) -> tuple[str | None, bool]:
    """``(token, generated)`` from ``--token-file``, then the environment, else a new one
    when ``new_token``; a token too short or too long is ``ConfigError``."""
    if new_token and (token_file is not None or environ.get(TOKEN_ENV)
                      or environ.get(TOKEN_FILE_ENV)):
        raise ConfigError("--new-token and a configured token exclude each other")
    token: str | None = None
    if token_file is not None:
        token = read_token(token_file)
    elif environ.get(TOKEN_FILE_ENV):
        token = read_token(Path(environ[TOKEN_FILE_ENV]))
    elif environ.get(TOKEN_ENV):
        token = environ[TOKEN_ENV].strip()
    elif new_token:
        return secrets.token_urlsafe(24), True
    if token is not None and not MIN_TOKEN_CHARS <= len(token) <= MAX_TOKEN_CHARS:
        raise ConfigError(f"the dashboard token must be {MIN_TOKEN_CHARS}-{MAX_TOKEN_CHARS} "
                          f"characters (it has {len(token)})")
    if token is not None and not token.isprintable():
        raise ConfigError("the dashboard token must be printable characters")
    return token, False


def check_options(options: UiOptions) -> None:
    """``ConfigError`` for the combinations the dashboard refuses to start with."""
    if not is_loopback(options.host) and not options.token:
        raise ConfigError(f"refusing to serve the dashboard on {options.host} (not loopback) "
                          f"without an access token: {HOW_TO_GIVE_A_TOKEN}")
    if options.allow_cancel and not options.token:
        raise ConfigError(f"--allow-cancel needs an access token: {HOW_TO_GIVE_A_TOKEN}")


__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "TOKEN_ENV",
    "TOKEN_FILE_ENV",
    "UiOptions",
    "check_options",
    "is_loopback",
    "read_token",
    "resolve_token",
]
