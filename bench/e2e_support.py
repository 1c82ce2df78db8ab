"""Helpers of ``bench_e2e.py``: processes, CPU from /proc, Redis and MongoDB counters, streams.

Everything here talks to the system under test from the outside: processes are started as
commands and stopped by their PID, Redis is read through its wire (INFO, XINFO, XREAD) and
MongoDB through ``serverStatus``, so the same code measures any implementation of the daemon.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import statistics
import subprocess
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PRELOAD_CHUNK = 1000
"""Entries per pipelined round trip when pre-loading a stream."""
READ_COUNT = 2000
"""Entries per XREAD of the updates stream."""
MONGO_HOUSEKEEPING = frozenset(
    {"hello", "isMaster", "ismaster", "ping", "serverStatus", "endSessions", "buildInfo",
     "buildinfo", "connectionStatus"}
)
"""Commands that are monitoring or handshakes, not store work: left out of round trips."""


# --- processes -------------------------------------------------------------------------------


@dataclass
class Proc:
    """A process this bench started (and the only kind it ever signals)."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def cpu_s(self) -> float:
        """CPU seconds (user + system) of the process and its living descendants."""
        return sum(cpu_seconds(pid) for pid in (self.pid, *descendants(self.pid)))

    def log_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout_s``, to this PID and the children it made."""
        if not self.alive():
            return
        children = descendants(self.pid)
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=timeout_s)
        for pid in children:  # started by our child, so by us; gone already when it drained
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def spawn(name: str, argv: Sequence[str], env: Mapping[str, str], log_dir: Path,
          cwd: Path | None = None) -> Proc:
    """Start ``argv`` with its output in ``log_dir/<name>.log``."""
    log_path = log_dir / f"{name}.log"
    with log_path.open("ab") as log:
        popen = subprocess.Popen(list(argv), env=dict(env), stdin=subprocess.DEVNULL,
                                 stdout=log, stderr=subprocess.STDOUT, cwd=cwd)
    return Proc(name, popen, log_path)


def stop_all(procs: Iterable[Proc]) -> None:
    for proc in procs:
        proc.stop()


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` from /proc/<pid>/stat (0 when it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rpartition(")")[2].split()  # fields[0] is field 3 (state)
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def descendants(pid: int) -> list[int]:
    """PIDs of the living descendants of ``pid`` (by each process's parent in /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, ppid in parents.items() if ppid == parent]
        found += children
        frontier += children
    return found


# --- Redis -----------------------------------------------------------------------------------


class BenchRedis:
    """The bench's own Redis connection; it counts its own commands so they can be left out
    of the INFO commandstats deltas that measure the system under test."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=None)
        self.own: Counter[str] = Counter()

    def command_counts(self) -> Counter[str]:
        """Calls per command so far (INFO commandstats), without INFO itself."""
        stats = self.client.info("commandstats")
        return Counter({name.removeprefix("cmdstat_"): int(row["calls"])
                        for name, row in stats.items() if name != "cmdstat_info"})

    def window(self, before: Counter[str], after: Counter[str]) -> Counter[str]:
        """Commands between two ``command_counts``, less the bench's own since ``before``."""
        delta = after.copy()
        delta.subtract(before)
        delta.subtract(self.own)
        self.own.clear()
        return +delta

    def preload(self, stream: str, field_name: str, values: Iterable[bytes | str]) -> None:
        """XADD one entry per value, ``PRELOAD_CHUNK`` per pipelined round trip."""
        pipe = self.client.pipeline(transaction=False)
        for count, value in enumerate(values, 1):
            pipe.xadd(stream, {field_name: value})
            if count % PRELOAD_CHUNK == 0:
                pipe.execute()
        pipe.execute()

    def group_info(self, stream: str, group: str) -> dict[str, Any] | None:
        """XINFO GROUPS for one group (None until the group exists)."""
        self.own["xinfo|groups"] += 1
        try:
            groups = self.client.xinfo_groups(stream)
        except redis.ResponseError:
            return None
        for info in groups:
            name = info["name"]
            if (name.decode() if isinstance(name, bytes) else name) == group:
                return dict(info)
        return None

    def exists(self, *keys: str) -> int:
        self.own["exists"] += 1
        return int(self.client.exists(*keys))

    def xadd(self, stream: str, fields: Mapping[str, str]) -> None:
        self.own["xadd"] += 1
        self.client.xadd(stream, dict(fields))  # type: ignore[arg-type]

    def xread(self, stream: str, last_id: str, block_ms: int | None,
              count: int = READ_COUNT) -> list[Any]:
        self.own["xread"] += 1
        reply = self.client.xread({stream: last_id}, count=count, block=block_ms)
        return reply[0][1] if reply else []

    def flush(self) -> None:
        self.client.flushall()
        self.own.clear()

    def close(self) -> None:
        self.client.close()


def wait_for(check: Any, what: str, procs: Sequence[Proc], timeout_s: float = 60.0,
             interval_s: float = 0.002) -> Any:
    """Poll ``check()`` until it returns something truthy; fail if a process died."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        for proc in procs:
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited while waiting for {what}:\n"
                                   f"{proc.log_tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(interval_s)


# --- the updates stream ----------------------------------------------------------------------


@dataclass
class UpdateFollower:
    """Follows ``<ns>:updates`` (the daemon's announcements of committed job changes).

    In ``count_only`` mode only finished job ids are kept (cheap: no JSON decoding); else
    each job's first IN_PROGRESS and its FINISHED update times (``at``, the daemon's clock)
    and when this follower received them (``time.time()``).
    """

    bench: BenchRedis
    stream: str
    count_only: bool = True
    last_id: str = "0-0"
    finished: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    started_at: dict[str, float] = field(default_factory=dict)
    finished_at: dict[str, float] = field(default_factory=dict)
    finished_seen: dict[str, float] = field(default_factory=dict)

    def poll(self, block_ms: int | None) -> int:
        """Read what is there (waiting up to ``block_ms``, None: not at all); return how many
        entries came."""
        entries = self.bench.xread(self.stream, self.last_id, block_ms)
        if not entries:
            return 0
        seen = time.time()
        for _, fields in entries:
            payload: bytes = fields[b"update"]
            if self.count_only:
                if b'"status":"FINISHED_' in payload:
                    job_id = payload[11:payload.index(b'"', 11)].decode()  # {"job_id":"...
                    good = b'"status":"FINISHED_SUCCESSFULLY"' in payload
                    (self.finished if good else self.failed).add(job_id)
                continue
            self._record(json.loads(payload), seen)
        self.last_id = entries[-1][0]
        return len(entries)

    def _record(self, update: dict[str, Any], seen: float) -> None:
        job_id, status = update["job_id"], update["status"]
        at = _iso_seconds(update["at"])
        if status == "IN_PROGRESS":
            self.started_at.setdefault(job_id, at)
        elif status.startswith("FINISHED_") and job_id not in self.finished_at:
            self.finished_at[job_id] = at
            self.finished_seen[job_id] = seen
            (self.finished if status == "FINISHED_SUCCESSFULLY" else self.failed).add(job_id)

    def done(self) -> int:
        return len(self.finished) + len(self.failed)


def _iso_seconds(text: str) -> float:
    from datetime import datetime  # noqa: PLC0415 - only the latency run decodes

    return datetime.fromisoformat(text).timestamp()


# --- MongoDB ---------------------------------------------------------------------------------


def mongo_counters(client: Any) -> tuple[Counter[str], Counter[str]]:
    """(opcounters, metrics.commands totals) from ``serverStatus`` — a real server's too."""
    status = client.admin.command("serverStatus")
    ops = Counter({name: int(value) for name, value in status["opcounters"].items()})
    commands = Counter({name: int(row["total"])
                        for name, row in status.get("metrics", {}).get("commands", {}).items()
                        if isinstance(row, Mapping) and "total" in row})
    return ops, commands


def drop_database(client: Any, name: str) -> None:
    client.drop_database(name)


def store_round_trips(commands: Counter[str]) -> Counter[str]:
    """Round trips that are store work: every command message except housekeeping."""
    return Counter({name: n for name, n in commands.items()
                    if name not in MONGO_HOUSEKEEPING and n > 0})


def stopped_round_trips(daemon: Proc) -> int | None:
    """``store_round_trips`` of the daemon's "daemon stopped" log line (JSON or console)."""
    with contextlib.suppress(OSError):
        for line in reversed(daemon.log_path.read_text(errors="replace").splitlines()):
            if "daemon stopped" in line:
                found = re.search(r'"?store_round_trips"?[=:]\s*(\d+)', line)
                return int(found.group(1)) if found else None
    return None


# --- numbers ---------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0..1) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def fmt(value: float | None, digits: int = 0) -> str:
    if value is None or value != value:  # None or NaN
        return "n/a"
    return f"{value:,.{digits}f}"
