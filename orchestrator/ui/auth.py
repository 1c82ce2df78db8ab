"""Access to the dashboard: the token check (an ASGI middleware) and the same-origin check.

With a token configured, every request but ``/healthz`` and ``/static/*`` must carry it:
``Authorization: Bearer TOKEN``, or the cookie ``orchestrator_ui`` that ``?token=TOKEN`` on
any page (``/login?token=…``) sets before redirecting to the same URL without it — so the
token leaves the address bar and the browser's history at once, and EventSource (which cannot
set headers) is let in by the cookie. The cookie holds a digest of the token, not the token,
and is HttpOnly and SameSite=Strict. Comparisons are constant-time (``hmac.compare_digest``).
Without a token (loopback only) a request must name a loopback host (``Host: 127.0.0.1:…``,
``localhost``), which keeps DNS-rebinding pages out. A pure ASGI middleware rather than
``BaseHTTPMiddleware`` so that server-sent events stream through it untouched.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlencode, urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import HTTPConnection, Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.ui.options import is_loopback

COOKIE = "orchestrator_ui"
OPEN_PATHS = ("/healthz",)
OPEN_PREFIXES = ("/static/",)

_NEEDED = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Token needed — orchestrator</title></head>
<body data-page="login"><h1>An access token is needed</h1>
<p>This dashboard asks for its access token. Open the address it printed when it started,
or <code>/login?token=YOUR-TOKEN</code>, or send <code>Authorization: Bearer YOUR-TOKEN</code>.
</p></body></html>
"""


def cookie_value(token: str) -> str:
    """What the cookie holds: a digest of the token (the token itself never sits in it)."""
    return hmac.new(token.encode(), b"orchestrator-ui-cookie", hashlib.sha256).hexdigest()


def _matches(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def authorized(conn: HTTPConnection, token: str) -> bool:
    """Whether the request carries the token (bearer header) or the cookie made from it."""
    header = conn.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and _matches(value.strip(), token):
        return True
    cookie = conn.cookies.get(COOKIE)
    return cookie is not None and _matches(cookie, cookie_value(token))


def without_token(request: Request) -> str:
    """The request's path and query without any ``token`` parameter (a relative URL;
    ``/login`` goes on to the jobs page)."""
    kept = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
    path = "/" + request.url.path.lstrip("/")  # never "//host": a redirect off the site
    path = "/jobs" if path == "/login" else path
    return path + (f"?{urlencode(kept)}" if kept else "")


def refusal(path: str) -> Response:
    """The 401 answer: JSON for the API, a small page otherwise; never says more."""
    if path.startswith("/api/"):
        return JSONResponse({"error": "an access token is needed"}, status_code=401,
                            headers={"WWW-Authenticate": "Bearer"})
    return HTMLResponse(_NEEDED, status_code=401, headers={"WWW-Authenticate": "Bearer"})


def loopback_host(headers: Headers) -> bool:
    """Whether the request's ``Host`` names a loopback address (``127.x``, ``localhost``,
    ``::1``). A dashboard without a token answers only such requests: a page of another site
    that re-points its own name at 127.0.0.1 (DNS rebinding) sends its own name as the host."""
    host = headers.get("host", "")
    name = host.rsplit("]", 1)[0].lstrip("[") if host.startswith("[") else host.split(":")[0]
    return bool(name) and is_loopback(name)


_NOT_HERE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Refused — orchestrator</title></head>
<body data-page="refused"><h1>Not served under this name</h1>
<p>This dashboard has no access token, so it answers only on loopback addresses
(127.0.0.1, localhost). To serve it under another name, start it with a token.</p>
</body></html>
"""


class TokenMiddleware:
    """Lets a request through only with the token (when one is configured); without one,
    only requests to a loopback host name."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.token is None:
            if loopback_host(Headers(scope=scope)):
                await self.app(scope, receive, send)
            else:
                await HTMLResponse(_NOT_HERE, status_code=403)(scope, receive, send)
            return
        path: str = scope.get("path", "")
        if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        given = request.query_params.get("token")
        if given is not None and request.method in ("GET", "HEAD"):
            if not _matches(given, self.token):
                await refusal(path)(scope, receive, send)
                return
            response = RedirectResponse(without_token(request), status_code=303)
            response.set_cookie(COOKIE, cookie_value(self.token), httponly=True,
                                samesite="strict", path="/",
                                secure=request.url.scheme == "https")
            await response(scope, receive, send)
            return
        if not authorized(request, self.token):
            await refusal(path)(scope, receive, send)
            return
        await self.app(scope, receive, send)


SECURITY_HEADERS = {
    # scripts and styles from the dashboard itself only; the job's JSON is data, not code
    "content-security-policy": ("default-src 'none'; script-src 'self'; "
                                "style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                                "connect-src 'self'; form-action 'self'; "
                                "frame-ancestors 'none'; base-uri 'none'"),
    "x-frame-options": "DENY",  # no framing: the cancel button cannot be clickjacked
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}


class SecurityHeaders:
    """Adds :data:`SECURITY_HEADERS` to every response (pages, JSON, events, refusals)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, with_headers)


def same_origin(headers: Headers) -> bool:
    """Whether the request comes from a page of this dashboard: its ``Origin`` (else its
    ``Referer``) names the host the request was sent to. Neither header: refused."""
    host = headers.get("host")
    source = headers.get("origin") or headers.get("referer")
    if not host or not source or source == "null":
        return False
    try:
        netloc = urlsplit(source).netloc
    except ValueError:
        return False
    return bool(netloc) and hmac.compare_digest(netloc.lower().encode(), host.lower().encode())


__all__ = ["COOKIE", "SECURITY_HEADERS", "SecurityHeaders", "TokenMiddleware", "authorized",
           "cookie_value", "loopback_host", "refusal", "same_origin"]
