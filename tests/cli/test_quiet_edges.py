"""The CLI's edges (issue 14, part 7): a reader of stdout that goes away ends any command quietly
with exit 0; a misspelt ``ORCHESTRATOR_*`` variable is warned about once, by name only."""

from __future__ import annotations

import subprocess
import sys

import pytest

from orchestrator.envcheck import unknown_variable_warnings
from orchestrator.settings import Settings, load_settings
from tests.cli.conftest import CliWorld
from tests.helpers import run_cli, unique


def _with_closed_stdout(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``orchestrator ARGS`` with its stdout a pipe whose reader is already gone (what
    ``| head -1`` leaves once head has its line): every write fails with EPIPE."""
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli.main", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    stderr = proc.stderr.read()
    proc.stderr.close()
    code = proc.wait(60)
    return subprocess.CompletedProcess(proc.args, code, "", stderr)


@pytest.mark.parametrize("command", [
    ("watch", "--once", "--json"), ("watch", "--once"), ("list",), ("list", "--json"),
    ("status", "{done}", "--json"), ("status", "{done}"), ("watch", "{done}", "--json"),
    ("events", "{done}"),
])
def test_a_closed_stdout_ends_the_command_quietly_with_exit_0(filled: CliWorld,
                                                              command: tuple[str, ...]) -> None:
    args = [part.format(done=filled.jobs["done"].job_id) for part in command]
    result = _with_closed_stdout(args, filled.env)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr


def test_the_same_commands_still_print_to_an_open_pipe(filled: CliWorld) -> None:
    result = run_cli("watch", "--once", "--json", env=filled.env)
    assert result.returncode == 0, result.stderr
    assert filled.jobs["done"].job_id in result.stdout


def test_a_misspelt_variable_is_warned_about_by_name_never_by_value(filled: CliWorld) -> None:
    secret = "hunter2-" + unique("pw")
    env = {**filled.env, "ORCHESTRATOR_REDIS_ULR": f"redis://u:{secret}@h:1/0",
           "ORCHESTRATOR_ZZQQ": secret}
    result = run_cli("list", "--json", env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert ("warning: ORCHESTRATOR_REDIS_ULR is not an orchestrator setting and is ignored; "
            "did you mean ORCHESTRATOR_REDIS_URL?") in lines
    assert ("warning: ORCHESTRATOR_ZZQQ is not an orchestrator setting and is ignored "
            "(no setting has a similar name)") in lines
    assert len(lines) == 2
    assert secret not in result.stderr + result.stdout


def test_known_names_pass_and_each_name_is_warned_once(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    names = list(Settings.model_fields)
    known = {f"ORCHESTRATOR_{n.upper()}": "x" for n in names}
    known.update(ORCHESTRATOR_DEV_DIR="d", orchestrator_namespace="lower case is a setting too",
                 PATH="/bin", ORCHESTRATORX="not the prefix")
    assert unknown_variable_warnings(known, names) == []
    assert unknown_variable_warnings({"ORCHESTRATOR_MONGO_DBB": "v"}, names) == [
        "warning: ORCHESTRATOR_MONGO_DBB is not an orchestrator setting and is ignored; "
        "did you mean ORCHESTRATOR_MONGO_DB?"]

    name = "ORCHESTRATOR_BATCH_SIZ" + unique("").replace("-", "_").upper()
    monkeypatch.setenv(name, "7")
    load_settings()
    load_settings()
    err = capsys.readouterr().err
    assert err.count(name) == 1
    assert "7" not in err.replace(name, "")
