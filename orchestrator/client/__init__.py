"""``orchestrator.client``: the Python API of the orchestrator (async, with a blocking twin).

``Client`` submits, lists, watches, waits for, cancels and explains jobs, reads their model
trail, downloads checkpoints (verified against the manifest), reads participant logs, the
daemon's rejections and the live workers. ``SyncClient`` offers the same methods blocking, on a
loop of its own (so it works inside a notebook's running loop). Both take their settings from
the environment, as the ``orchestrator`` command does. See docs/client.md.
"""

from orchestrator.client.client import Client
from orchestrator.client.handle import JobHandle
from orchestrator.client.logs import LogLine
from orchestrator.client.records import CancelResult, Change, JobPage, WorkerInfo
from orchestrator.client.specs import SpecProblems, parse_spec
from orchestrator.client.sync import SyncClient, SyncJobHandle
from orchestrator.client.updates import UpdatesTrimmedError
from orchestrator.client.why import Explanation

__all__ = [
    "CancelResult",
    "Change",
    "Client",
    "Explanation",
    "JobHandle",
    "JobPage",
    "LogLine",
    "SpecProblems",
    "SyncClient",
    "SyncJobHandle",
    "UpdatesTrimmedError",
    "WorkerInfo",
    "parse_spec",
]
