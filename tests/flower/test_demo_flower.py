"""``orchestrator demo --workload flower`` end to end, as a user runs it (a subprocess with a
fresh stack directory), checked behind the demo's back with pymongo and boto3: the job
FINISHED_SUCCESSFULLY, a metrics row per client and round, one checkpoint per round whose
bytes in S3 match the manifest's sha256."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("flwr")

from helpers import run_cli, subprocess_env

from tests.cli.test_demo import check_the_job_behind_the_demos_back

pytestmark = pytest.mark.slow


def test_the_flower_demo_runs_the_example_app_to_success(tmp_path: Path) -> None:
    directory = tmp_path / "stack"
    env = subprocess_env({})
    result = run_cli("demo", "--workload", "flower", "--rounds", "3", "--clients", "3",
                     "--dir", directory, "--keep", env=env, timeout_s=240)
    output = result.stdout + result.stderr
    try:
        assert result.returncode == 0, output
        match = re.search(r"job (demo-[0-9a-f]{12}) FINISHED_SUCCESSFULLY", result.stdout)
        assert match, output
        assert "submitted job" in result.stdout and ": flower, 3 rounds" in result.stdout
        assert "flower demo check failed" not in output
        assert "final accuracy" in result.stdout  # the ServerApp's held-out evaluation
        check_the_job_behind_the_demos_back(directory, match.group(1), rounds=3, clients=3)
    finally:
        down = run_cli("dev", "down", "--dir", directory, env=env)
    assert down.returncode == 0, down.stderr
