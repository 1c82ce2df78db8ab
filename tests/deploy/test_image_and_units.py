"""``deploy/Dockerfile`` and ``deploy/systemd`` offline. No Dockerfile linter is installable
here (hadolint is not on PyPI or npm), so these are structural checks in Python: a multi-stage
build, no dev dependencies, pinned base images, a non-root USER and a HEALTHCHECK on
``/healthz`` in the final stage; the units start the right commands with stable consumer
names and the metrics address."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess

import pytest

from tests.deploy.support import DEPLOY


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    found = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last:]


def test_dockerfile_is_multi_stage_with_pinned_bases() -> None:
    bases = [args for word, args in instructions() if word == "FROM"]
    assert len(bases) >= 2
    for base in bases:
        image = base.split()[0]
        assert re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+[\w.-]*", image), image
    assert any("--from=build" in args for word, args in final_stage() if word == "COPY")


def test_dockerfile_installs_no_dev_dependencies() -> None:
    installs = [args for word, args in instructions() if word == "RUN" and "pip install" in args]
    assert installs
    for args in installs:
        assert "[dev" not in args and "pytest" not in args, args


def test_final_stage_runs_as_non_root_with_a_healthcheck() -> None:
    stage = final_stage()
    users = [args for word, args in stage if word == "USER"]
    assert users, "no USER in the final stage"
    assert users[-1].split(":")[0] not in ("root", "0")
    (check,) = [args for word, args in stage if word == "HEALTHCHECK"]
    assert "/healthz" in check and "CMD" in check
    env = " ".join(args for word, args in stage if word == "ENV")
    port = re.search(r"ORCHESTRATOR_METRICS_ADDR=[\d.]+:(\d+)", env)
    assert port is not None, "the image must turn the metrics address on"
    assert f":{port.group(1)}/healthz" in check


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((DEPLOY / "systemd" / name).read_text())
    return parser


def test_systemd_units() -> None:
    daemon = unit("orchestrator-daemon.service")["Service"]
    assert daemon["ExecStart"].endswith("orchestrator daemon")
    assert daemon["User"] == "orchestrator"
    text = (DEPLOY / "systemd" / "orchestrator-daemon.service").read_text()
    assert "Environment=ORCHESTRATOR_CONSUMER_NAME=%H" in text
    assert "Environment=ORCHESTRATOR_METRICS_ADDR=127.0.0.1:9464" in text
    worker = unit("orchestrator-worker@.service")["Service"]
    assert "--name %i" in worker["ExecStart"]
    for service in (daemon, worker):
        assert service["Restart"] == "always"
        assert service["KillSignal"] == "SIGTERM"
        assert service["NoNewPrivileges"] == "true"


def test_shell_scripts_parse_with_posix_sh() -> None:
    scripts = sorted(DEPLOY.rglob("*.sh"))
    assert len(scripts) >= 3
    for script in scripts:
        assert script.read_text().startswith("#!/bin/sh\n"), script
        result = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True,
                                check=False)
        assert result.returncode == 0, f"{script}: {result.stderr}"


def test_the_mongo_init_script_parses() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: cannot syntax-check deploy/mongo/init.js")
    result = subprocess.run([node, "--check", str(DEPLOY / "mongo" / "init.js")],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
