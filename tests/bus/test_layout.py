"""The package's names: ``orchestrator.bus`` exports every name the old ``streams`` module
had, and light submodules stay light."""

from __future__ import annotations

import subprocess
import sys

import pytest

import orchestrator.bus

#: What the old ``orchestrator.bus.streams`` exported before the bus was split.
STREAMS_NAMES = {"TRANSIENT_REDIS_ERRORS", "Batch", "Bus", "Entry", "Redis", "StreamConsumer",
                 "connect_redis", "submission_job_id", "translated", "trim_floor",
                 "update_payload"}


def test_the_package_has_every_name_streams_had() -> None:
    assert set(orchestrator.bus.__all__) >= STREAMS_NAMES


def test_the_package_exports_what_it_lists() -> None:
    for name in orchestrator.bus.__all__:
        assert getattr(orchestrator.bus, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = orchestrator.bus.nothing


def test_keys_and_retry_load_neither_redis_nor_a_logger() -> None:
    code = ("import sys, orchestrator.bus.keys, orchestrator.bus.retry\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'redis'"
            " or m.startswith(('orchestrator.bus.', 'orchestrator.logs'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "['orchestrator.bus.keys', 'orchestrator.bus.retry']"
