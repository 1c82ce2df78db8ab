"""The dashboard as the demo and the local stack start it: ``demo --ui`` prints its URL before
submitting and stops it at the end; ``dev up`` serves one with the watcher's (read-only)
credentials and prints its URL, ``dev down`` stops it by pid, ``--no-ui`` skips it. (One
stack for both: the demo's, kept.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
from helpers import run_cli, subprocess_env

from orchestrator.devstack import stack
from orchestrator.devstack.servers import pid_alive

URL = re.compile(r"dashboard: (http://127\.0\.0\.1:\d+/)")


def test_demo_ui_then_dev_up_and_down(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    env = subprocess_env({})
    try:
        demo = run_cli("demo", "--ui", "--keep", "--rounds", "1", "--clients", "1", "--dir",
                       directory, env=env, timeout_s=180)
        assert demo.returncode == 0, demo.stdout + demo.stderr
        out = demo.stdout
        found = URL.search(out)
        assert found and out.index("dashboard:") < out.index("submitted job")
        assert re.search(r"dashboard: http://127\.0\.0\.1:\d+/jobs/demo-", out)
        processes = json.loads((directory / "demo" / "processes.json").read_text())
        ui = [p for p in processes["processes"] if p["role"] == "ui"]
        assert len(ui) == 1 and not pid_alive(ui[0]["pid"])  # stopped with the demo
        with pytest.raises(httpx.TransportError):
            httpx.get(found.group(1) + "healthz", timeout=2)
        job_id = re.search(r"submitted job (\S+):", out).group(1)  # type: ignore[union-attr]

        up = run_cli("dev", "up", "--dir", directory, env=env)  # the kept stack: ui only
        assert up.returncode == 0, up.stderr
        found = URL.search(up.stdout)
        assert found, up.stdout
        url = found.group(1)
        jobs = httpx.get(url + "api/jobs", timeout=10).json()["jobs"]  # the watcher's user
        assert [j["id"] for j in jobs] == [job_id]
        assert httpx.get(url + "workers", timeout=10).status_code == 200
        record = json.loads((directory / "ui" / "ui.json").read_text())
        assert pid_alive(record["pid"]) and "password" not in json.dumps(record)
        password = stack.read_env_file(directory / "env.watcher")[stack.REDIS_URL] \
            .split("@")[0].rsplit(":", 1)[-1]
        assert password not in up.stdout and password not in (directory / "ui" / "ui.log") \
            .read_text()
        status = json.loads(run_cli("dev", "status", "--dir", directory, "--json",
                                    env=env).stdout)
        assert status["dashboard"]["url"] == url and status["dashboard"]["alive"] is True
        again = run_cli("dev", "up", "--dir", directory, env=env)
        assert "(already running)" in again.stdout
        down = run_cli("dev", "down", "--dir", directory, env=env)
        assert down.returncode == 0 and "stopped ui, " in down.stdout
        assert not pid_alive(record["pid"])
        text = run_cli("dev", "status", "--dir", directory, env=env).stdout
        assert "ui     pid -" in text and "down (dev up starts it)" in text
        quiet = run_cli("dev", "up", "--dir", directory, "--no-ui", env=env)
        assert quiet.returncode == 0 and "dashboard:" not in quiet.stdout
        assert not pid_alive(record["pid"])
    finally:
        stack.down(directory)
