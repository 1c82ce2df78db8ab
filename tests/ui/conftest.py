"""Fixtures of the dashboard tests (these and the browser tests in ``browser/``).

``ui_system`` (package scope): a live system — a real daemon, a server worker and two client
workers, as processes, in their own namespace and database — shared by the dashboard's test
modules (each starting a system of its own would cost seconds per module).

``ui_server`` (module scope): ``orchestrator ui`` on that system (a real uvicorn, a free port
of 127.0.0.1, no token). It yields a :class:`tests.ui.support.UiServer`: ``.url``
(``http://127.0.0.1:PORT/``), ``.env`` (the system's environment, what the CLI and
``Client()`` read), ``.token`` (None) and ``.restart_daemon()``. Jobs of other modules are
in the same database: tests find theirs by id or label.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.ui.support import LiveSystem, UiServer, dashboard_on, live_system

SERVER, CLIENTS = "ui-server", ["ui-client-1", "ui-client-2"]


@pytest.fixture(scope="package")
def ui_system(stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[LiveSystem]:
    """A daemon and three workers for the dashboard's tests; stopped by pid afterwards."""
    with live_system(stack_env, tmp_path_factory.mktemp("ui"), "ui", SERVER,
                     CLIENTS) as system:
        yield system


@pytest.fixture(scope="module")
def ui_server(ui_system: LiveSystem, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[UiServer]:
    """The dashboard (no token) on the live system, one per test module."""
    with dashboard_on(ui_system, tmp_path_factory.mktemp("ui-server")) as dashboard:
        yield dashboard
