"""The orchestrator daemon: the one imperative shell around the pure core.

``Daemon(store, redis, options)`` — start it with ``await tg.start(daemon.run)`` and stop it
with ``daemon.stop()``; ``run_daemon`` adds SIGTERM/SIGINT handling (used by the CLI).
"""

from orchestrator.daemon.app import Daemon, run_daemon, serve
from orchestrator.daemon.intake import parse_submission
from orchestrator.daemon.options import DaemonOptions
from orchestrator.daemon.stats import Stats

__all__ = ["Daemon", "DaemonOptions", "Stats", "parse_submission", "run_daemon", "serve"]
