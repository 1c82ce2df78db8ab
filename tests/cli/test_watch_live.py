"""The live paths against a running system: a real daemon and workers (subprocesses).

``watch JOB`` is driven in a pseudo-terminal (pexpect) while a job runs; ``watch JOB --json``
is followed from before the submission to the finished state; ``submit --wait`` and
``cancel --wait`` report the outcome in their exit code.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pexpect
import pytest
from helpers import LIVE_CLIENTS, LIVE_SERVER, run_cli, unique

SERVER, CLIENTS = LIVE_SERVER, LIVE_CLIENTS
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][A-Za-z0-9]|\r")


@pytest.fixture
def system(live_env: dict[str, str]) -> dict[str, str]:
    """A daemon and three workers in their own namespace and database (the session's
    ``live_env``, shared with tests/client/test_live.py)."""
    return live_env


SERVER_KEYS = {"seed", "features", "classes", "test_samples", "round_timeout_s"}
CLIENT_KEYS = {"seed", "features", "classes", "samples", "epochs", "lr", "round_timeout_s"}


def only(config: dict[str, Any], keys: set[str], workload: str) -> dict[str, Any]:
    """fedavg's server and clients take different options; the others the same ones."""
    return {k: v for k, v in config.items() if k in keys} if workload == "fedavg" else config


def write_spec(tmp_path: Path, job_id: str, workload: str, *, rounds: int,
               config: dict[str, Any]) -> Path:
    spec = {
        "job_id": job_id,
        "workload": workload,
        "rounds": rounds,
        "server": {"worker": SERVER, "config": only(config, SERVER_KEYS, workload)},
        "clients": [{"worker": name, "config": only(config, CLIENT_KEYS, workload)}
                    for name in CLIENTS],
        "timeouts": {"start_s": 30, "heartbeat_s": 10, "round_s": 30, "job_s": 120},
    }
    path = tmp_path / f"{job_id}.json"
    path.write_text(json.dumps(spec))
    return path


def test_watch_in_a_terminal_shows_job_participants_and_round_progress(
        system: dict[str, str], tmp_path: Path) -> None:
    job_id = unique("pty")
    spec = write_spec(tmp_path, job_id, "sleep", rounds=4, config={"seconds": 4})
    result = run_cli("submit", spec, env=system)
    assert result.returncode == 0, result.stderr
    child = pexpect.spawn(
        sys.executable, ["-m", "orchestrator.cli.main", "watch", job_id],
        env=system | {"TERM": "xterm-256color"}, dimensions=(60, 160), encoding="utf-8",
        timeout=60,
    )
    screen = ""
    seen_running = False
    try:
        while True:
            try:
                screen += ANSI.sub("", child.read_nonblocking(65536, timeout=60))
            except pexpect.EOF:
                break
            frames = screen.split("╭─ job ")[1:-1]  # every complete redraw of the view
            for frame in frames[-3:]:
                if (not seen_running and "IN_PROGRESS" in frame
                        and re.search(r"\b[1-3]/4\b", frame)):
                    seen_running = True
                    for expected in (job_id, "participants", "server", "client-0",
                                     "client-1", SERVER, CLIENTS[1], "started", "heartbeat",
                                     "ago", "events"):
                        assert expected in frame, f"{expected!r} not on screen:\n{frame}"
            screen = screen[-20000:]
        child.close()
    finally:
        if child.isalive():
            child.terminate(force=True)
    assert seen_running, f"never saw the job running:\n{screen[-4000:]}"
    assert "FINISHED_SUCCESSFULLY" in screen[-6000:]
    assert child.exitstatus == 0, screen[-2000:]


def _lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def test_watch_json_follows_the_job_from_submission_to_finished(
        system: dict[str, str], tmp_path: Path) -> None:
    job_id = unique("json")
    watcher = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli.main", "watch", job_id, "--json",
         "--wait-for-job", "60"],
        env=system, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        time.sleep(1.0)  # the watcher is waiting for a job that does not exist yet
        spec = write_spec(tmp_path, job_id, "fedavg", rounds=3,
                          config={"seed": 3, "samples": 200, "test_samples": 300})
        assert run_cli("submit", spec, env=system).returncode == 0
        out, err = watcher.communicate(timeout=90)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
    assert watcher.returncode == 0, err
    lines = _lines(out)
    assert {line["id"] for line in lines} == {job_id}
    versions = [line["version"] for line in lines]
    assert versions == sorted(set(versions)), "one line per change, in order"
    statuses = [line["status"] for line in lines]
    # Its workers were alive: the daemon created the job already dispatched.
    assert statuses[0] == "IN_PROGRESS"
    assert lines[0]["reason"] == "dispatched"
    assert statuses[-1] == "FINISHED_SUCCESSFULLY"
    assert "IN_PROGRESS" in statuses
    rounds = [line["round"] for line in lines if line["status"] == "IN_PROGRESS"]
    assert rounds == sorted(rounds)
    assert max(rounds) == 3
    final = lines[-1]
    assert final["rounds"] == 3
    assert 0.0 < final["server_metrics"]["accuracy"] <= 1.0
    assert final["final_checkpoint"]
    # The job ends once the server finished with its final checkpoint and its clients ended.
    assert set(final["participant_states"].values()) == {"finished"}


def test_submit_wait_reports_success_and_failure_in_the_exit_code(
        system: dict[str, str], tmp_path: Path) -> None:
    good = write_spec(tmp_path, unique("ok"), "noop", rounds=1, config={})
    bad = write_spec(tmp_path, unique("bad"), "fail", rounds=2,
                     config={"message": "boom on purpose", "participant": "client-1",
                             "seconds": 3})  # the others run on: client-1 fails first
    procs = [subprocess.Popen([sys.executable, "-m", "orchestrator.cli.main", "submit",
                               str(path), "--wait", "--timeout", "60"],
                              env=system, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for path in (good, bad)]
    (_, ok_err), (_, bad_err) = (p.communicate(timeout=90) for p in procs)
    assert procs[0].returncode == 0, ok_err
    assert "FINISHED_SUCCESSFULLY" in ok_err
    assert procs[1].returncode == 1, bad_err
    assert "FINISHED_WITH_ERROR" in bad_err
    assert "boom on purpose" in bad_err

    result = run_cli("status", json.loads(bad.read_text())["job_id"], "--json", env=system)
    data = json.loads(result.stdout)
    assert data["error"]["participant"] == "client-1"


def test_submit_wait_json_streams_lines_and_an_unschedulable_submission_fails(
        system: dict[str, str], tmp_path: Path) -> None:
    path = write_spec(tmp_path, unique("rej"), "noop", rounds=1, config={})
    # Any well-formed workload name is accepted at intake; admission fails the job at once
    # when its live workers do not offer the workload, and submit warns before it submits.
    spec = json.loads(path.read_text()) | {"workload": "no-such-workload"}
    path.write_text(json.dumps(spec))
    result = run_cli("submit", path, "--wait", "--json", env=system, timeout_s=60)
    assert result.returncode == 1
    assert "does not offer workload 'no-such-workload'" in result.stderr
    lines = _lines(result.stdout)
    first = lines[0]
    entry_id = first.pop("entry_id")
    assert re.fullmatch(r"\d+-\d+", entry_id), entry_id
    assert first == {"id": spec["job_id"], "idempotency_key": None, "submitted": True}
    last = lines[-1]
    assert last["status"] == "FINISHED_WITH_ERROR", last
    assert "cannot_schedule" in json.dumps(last), last


def test_cancel_wait_stops_a_running_job(system: dict[str, str], tmp_path: Path) -> None:
    job_id = unique("cancel")
    spec = write_spec(tmp_path, job_id, "sleep", rounds=2, config={"seconds": 60})
    assert run_cli("submit", spec, env=system).returncode == 0
    watcher = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli.main", "watch", job_id, "--json"],
        env=system, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert watcher.stdout is not None
        for raw in watcher.stdout:  # until the job runs
            line = json.loads(raw)
            if line["status"] == "IN_PROGRESS" and line["round"] >= 1:
                break
        else:
            pytest.fail(f"the job never ran: {watcher.stderr.read() if watcher.stderr else ''}")
    finally:
        watcher.kill()
        watcher.communicate()
    result = run_cli("cancel", job_id, "--wait", "--timeout", "60", env=system, timeout_s=90)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FINISHED_CANCELLED" in result.stdout
    events = json.loads(run_cli("events", job_id, "--json", env=system).stdout)
    assert events["history"][-1]["to"] == "FINISHED_CANCELLED"
    assert any(e["type"] == "participant.stopped" for e in events["events"])


def test_watch_table_in_a_terminal_follows_new_jobs_until_ctrl_c(
        system: dict[str, str], tmp_path: Path) -> None:
    child = pexpect.spawn(
        sys.executable, ["-m", "orchestrator.cli.main", "watch"],
        env=system | {"TERM": "xterm-256color"}, dimensions=(50, 160), encoding="utf-8",
        timeout=30,
    )
    try:
        child.expect("jobs")  # the first frame is drawn before any job of ours exists
        job_id = unique("table")
        spec = write_spec(tmp_path, job_id, "sleep", rounds=2, config={"seconds": 30})
        assert run_cli("submit", spec, env=system).returncode == 0
        screen = ""
        while not (job_id in screen and "IN_PROGRESS" in screen):
            screen = (screen + ANSI.sub("", child.read_nonblocking(65536, timeout=30)))[-8000:]
        assert "sleep" in screen
        child.sendintr()
        child.expect(pexpect.EOF)
        child.close()
    finally:
        if child.isalive():
            child.terminate(force=True)
    assert child.exitstatus == 0
    assert run_cli("cancel", job_id, env=system).returncode == 0
