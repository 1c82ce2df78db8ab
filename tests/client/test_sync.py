"""The blocking client's own loop thread: errors come back as ``orchestrator.errors``
exceptions, and a script that never closes its client still ends (the loop thread does not
hold up the interpreter's exit). No server is needed: the addresses are unreachable."""

from __future__ import annotations

import re
import subprocess
import sys
import threading

import pytest

from orchestrator.client import SyncClient
from orchestrator.errors import BusUnavailableError
from orchestrator.settings import Settings

UNREACHABLE = Settings(redis_url="redis://127.0.0.1:9/0", mongo_url="mongodb://127.0.0.1:9/")

SCRIPT = """
from orchestrator.client import SyncClient
from orchestrator.errors import StoreUnavailableError
from orchestrator.settings import Settings
client = SyncClient(Settings(redis_url="redis://127.0.0.1:9/0", mongo_url="mongodb://127.0.0.1:9/",
                             connect_timeout_s=0.5))  # (a refused port: no need to wait 3 s)
try:
    client.get("x")
except StoreUnavailableError as exc:
    print("unreachable, as expected:", exc)
# no client.close(): the script must end anyway
"""


def test_unreachable_servers_raise_our_errors_and_close_ends_the_thread() -> None:
    before = {t.name for t in threading.enumerate()}
    client = SyncClient(UNREACHABLE)
    assert "orchestrator-client" in {t.name for t in threading.enumerate()} - before
    with pytest.raises(BusUnavailableError, match=re.escape("127.0.0.1")):
        client.workers()  # (MongoDB unreachable: in the script below, in its own process,
    #                        since pymongo leaves its monitor's refused socket to the GC)
    client.close()
    client.close()  # twice is harmless
    assert "orchestrator-client" not in {t.name for t in threading.enumerate()} - before


def test_a_script_that_never_closes_its_client_still_exits() -> None:
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "unreachable, as expected: 127.0.0.1:9" in result.stdout
