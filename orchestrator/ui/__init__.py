"""``orchestrator ui``: a live web dashboard of jobs, workers and rejections (Starlette, served
by uvicorn), reading only through :class:`orchestrator.client.Client`. Pages are rendered on the
server (usable without JavaScript for the tables); live changes arrive as server-sent events
from the daemon's updates stream. See docs/ui.md.

Notes against the dashboard's contract (issue 15), all additions or readings of it:
``/events`` accepts ``status`` but does not filter by it (the page does) and ignores paging;
a ``trouble`` message reads ``Redis unreachable: …`` / ``MongoDB unreachable: …``; the cookie
holds an HMAC digest of the token, not the token; ``orchestrator ui --new-token`` makes the
"token generated for this run"; without a token only requests to a loopback host name are
served (DNS rebinding), and every response carries a Content-Security-Policy
(``script-src 'self'``) and ``X-Frame-Options: DENY``.
"""
