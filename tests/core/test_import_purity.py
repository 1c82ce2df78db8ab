"""The core imports no I/O library (style: a pure core, one imperative shell)."""

import subprocess
import sys


def test_core_loads_no_io_library() -> None:
    code = (
        "import sys, orchestrator.core\n"
        "bad = [m for m in ('redis', 'pymongo', 'motor', 'aioboto3', 'botocore', 'anyio',"
        " 'asyncio') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
