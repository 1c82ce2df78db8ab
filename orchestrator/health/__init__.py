"""Metrics and health endpoints of the daemon and the worker (``/metrics``, ``/healthz``,
``/readyz``).

Importing this package is cheap: the hot paths only use :mod:`orchestrator.health.counters`
(plain ints); ``prometheus_client`` is imported by the endpoint modules, which the CLI loads
only when ``--metrics-addr`` (or ``ORCHESTRATOR_METRICS_ADDR``) is set.
"""

from orchestrator.health.address import DEFAULT_HOST, parse_address
from orchestrator.health.counters import Buckets, UploadCounters

__all__ = ["DEFAULT_HOST", "Buckets", "UploadCounters", "parse_address"]
