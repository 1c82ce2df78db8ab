"""A dependable asynchronous job orchestrator for multi-party jobs."""

__version__ = "0.1.0"
