"""What every handler of the dashboard shares: the client, the options, the templates, and the
scrubbing of secrets from any message it shows.

Error messages come from drivers (``error_gist``), which normally carry no credentials; the
dashboard still replaces every secret it knows — the Redis and MongoDB URLs' passwords, the
Redis password setting, the S3 keys of its environment, the access token — with ``***``
before a message reaches a page, a JSON answer or an event, as a second line of defence.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from orchestrator.errors import (
    BusUnavailableError,
    OrchestratorError,
    StorageError,
    StoreUnavailableError,
    error_gist,
)
from orchestrator.ui import views
from orchestrator.ui.data import utcnow
from orchestrator.watch.model import format_age

if TYPE_CHECKING:
    from orchestrator.client import Client
    from orchestrator.settings import Settings
    from orchestrator.ui.options import UiOptions

TEMPLATES = Path(__file__).parent / "templates"
SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "ORCHESTRATOR_DAEMON_KEY",
              "ORCHESTRATOR_REDIS_PASSWORD", "ORCHESTRATOR_UI_TOKEN")
MIN_SECRET_CHARS = 4


def templates_env() -> Environment:
    """Jinja2 with autoescaping on for every template (and for strings rendered directly)."""
    env = Environment(loader=FileSystemLoader(TEMPLATES),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      trim_blocks=False, lstrip_blocks=False)
    env.globals.update(iso=views.iso, shown_time=views.shown_time, format_age=format_age,
                       age_s=views.age_seconds, human_size=views.human_size,
                       error_text=views.error_text, event_line=views.event_line)
    return env


def url_secrets(url: str) -> list[str]:
    """The password of a URL (raw and decoded) and any ``…password…=`` query value."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return []
    found = [password, unquote(password)] if password else []
    for item in parts.query.split("&"):
        name, sep, value = item.partition("=")
        if sep and "password" in name.lower() and value:
            found += [value, unquote(value)]
    return found


def known_secrets(settings: Settings, token: str | None,
                  environ: Mapping[str, str] | None = None) -> list[str]:
    """Every secret the dashboard's process knows of, longest first."""
    environ = os.environ if environ is None else environ
    found = url_secrets(settings.redis_url) + url_secrets(settings.mongo_url)
    if settings.redis_password is not None:
        found.append(settings.redis_password.get_secret_value())
    found += [environ.get(name, "") for name in SECRET_ENV]
    if token:
        found.append(token)
    return sorted({s for s in found if s and len(s) >= MIN_SECRET_CHARS}, key=len, reverse=True)


@dataclass
class Dashboard:
    """The app's shared state (``request.app.state.dashboard``)."""

    client: Client
    options: UiOptions
    secrets: list[str] = field(default_factory=list)
    env: Environment = field(default_factory=templates_env)

    def scrub(self, text: str) -> str:
        """``text`` with every known secret replaced by ``***``."""
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def trouble(self, exc: BaseException) -> str:
        """One line naming the server that failed and the gist, without secrets."""
        if isinstance(exc, StoreUnavailableError):
            what = "MongoDB unreachable"
        elif isinstance(exc, BusUnavailableError):
            what = "Redis unreachable"
        elif isinstance(exc, StorageError):
            what = "the object store failed"
        else:
            what = "failed"
        return self.scrub(f"{what}: {error_gist(exc, 200)}")

    def render(self, request: Request, name: str, context: Mapping[str, Any], *,
               page: str, stream_id: str = "", status_code: int = 200) -> HTMLResponse:
        """A page: ``name`` rendered with ``context`` plus what the layout needs."""
        template = self.env.get_template(name)
        html = template.render({"page": page, "stream_id": stream_id, "now": utcnow(),
                                "request": request, **context})
        return HTMLResponse(html, status_code=status_code,
                            headers={"Cache-Control": "no-store"})

    def problem(self, request: Request, *, status_code: int, heading: str, message: str,
                page: str = "problem", rejection: Mapping[str, Any] | None = None
                ) -> HTMLResponse:
        return self.render(request, "problem.html",
                           {"heading": heading, "message": self.scrub(message),
                            "rejection": rejection}, page=page, status_code=status_code)

    def unavailable(self, request: Request, exc: OrchestratorError, *, page: str
                    ) -> HTMLResponse:
        """The 503 page: which server is unreachable, never a traceback."""
        return self.problem(request, status_code=503, heading="A server is unreachable",
                            message=f"{self.trouble(exc)} — the page will work again once "
                                    "it is back; reload it.", page=page)


def dashboard(request: Request) -> Dashboard:
    state: Dashboard = request.app.state.dashboard
    return state


def unavailable_errors() -> tuple[type[OrchestratorError], ...]:
    """The errors that mean "a server is unreachable" (503) rather than a bug."""
    from orchestrator.errors import StorageUnavailableError  # noqa: PLC0415

    return (StoreUnavailableError, BusUnavailableError, StorageUnavailableError)


__all__ = ["Dashboard", "dashboard", "known_secrets", "templates_env", "unavailable_errors"]
