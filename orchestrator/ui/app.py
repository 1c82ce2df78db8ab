"""The dashboard's ASGI app: :func:`create_app` wires the routes, the token middleware, the
static files and the shared state around one :class:`orchestrator.client.Client`.

The app owns no connection of its own: everything it reads goes through the client, which
connects on first use and is closed when the app shuts down (the lifespan). See docs/ui.md.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from orchestrator.ui import api, pages, sse
from orchestrator.ui.auth import SecurityHeaders, TokenMiddleware
from orchestrator.ui.state import Dashboard, known_secrets

if TYPE_CHECKING:
    from orchestrator.client import Client
    from orchestrator.ui.options import UiOptions

STATIC = Path(__file__).parent / "static"


def routes() -> list[Route | Mount]:
    return [
        Route("/", pages.home),
        Route("/healthz", pages.healthz),
        Route("/login", pages.home),  # (the token middleware sets the cookie first)
        Route("/jobs", pages.jobs),
        Route("/jobs/{job_id}", pages.job),
        Route("/jobs/{job_id}/checkpoints/{index:int}", pages.checkpoint),
        Route("/jobs/{job_id}/cancel", pages.cancel, methods=["POST"]),
        Route("/workers", pages.workers),
        Route("/rejections", pages.rejections),
        Route("/api/jobs", api.jobs),
        Route("/api/jobs/{job_id}", api.job),
        Route("/api/workers", api.workers),
        Route("/api/rejections", api.rejections),
        Route("/events", sse.events),
        Mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static"),
    ]


def create_app(client: Client, options: UiOptions) -> Starlette:
    """The dashboard on ``client`` (closed with the app), as ``options`` say."""
    board = Dashboard(client, options, known_secrets(client.settings, options.token))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await client.aclose()

    app = Starlette(routes=routes(), lifespan=lifespan,
                    middleware=[Middleware(SecurityHeaders),
                                Middleware(TokenMiddleware, token=options.token)])
    app.state.dashboard = board
    return app


__all__ = ["create_app"]
