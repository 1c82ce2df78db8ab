"""Run the fault suite and print its table: one line per scenario, the invariants it checks.

    python bench/faults.py            # every test marked @pytest.mark.fault (a few minutes)
    python bench/faults.py -k outage  # extra pytest arguments are passed on

The scenarios run as ordinary tests against real processes and servers (tests/); this only
selects them (``-m fault``) and asks for the table (``--fault-table``, tests/faults.py).
Exit code: pytest's.
"""

from __future__ import annotations

import sys

import pytest

if __name__ == "__main__":
    sys.exit(pytest.main(["-m", "fault", "--fault-table", "-q", "-p", "no:cacheprovider",
                          *sys.argv[1:]]))
