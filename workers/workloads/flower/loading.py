"""Finding Flower and the app a spec names.

The spec names the app as ``module:attribute``; the module must be importable on the worker
(installed, or on its ``PYTHONPATH``): a spec is data and never brings code. Importing runs
the module, so a worker offers the ``flower`` workload for the apps its operator installed.
"""

from __future__ import annotations

import importlib
from typing import Any

from orchestrator.errors import WorkloadError

INSTALL_HINT = "pip install 'orchestrator[flower]'"


def require_flower() -> None:
    """Raise a ``WorkloadError`` saying how to install Flower when ``flwr`` is missing."""
    try:
        importlib.import_module("flwr")
    except ImportError as exc:
        msg = (f"the flower workload needs Flower (flwr >= 1.40) on this worker: {INSTALL_HINT} "
               f"({exc})")
        raise WorkloadError(msg) from exc


def load_reference(reference: str) -> Any:
    """The object ``module:attribute`` names; ``WorkloadError`` with the import's error."""
    module_name, _, attribute = reference.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:  # the app's own import errors, too: say which
        msg = f"cannot import {module_name!r} for the Flower app {reference!r}: {exc}"
        raise WorkloadError(msg) from exc
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            msg = f"{module_name!r} has no attribute {attribute!r} (the Flower app {reference!r})"
            raise WorkloadError(msg) from None
    return target


def load_app(reference: str, kind: type[Any]) -> Any:
    """The app ``reference`` names, checked to be a ``kind`` (ServerApp or ClientApp)."""
    app = load_reference(reference)
    if not isinstance(app, kind):
        msg = f"{reference!r} is a {type(app).__name__}, not a Flower {kind.__name__}"
        raise WorkloadError(msg)
    return app
