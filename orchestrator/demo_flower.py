"""``orchestrator demo --workload flower``: the example Flower App (``examples/flower-app``)
through the whole system, and the checks the demo makes of its outcome.

The app is not installed: each worker gets the example's directory on its ``PYTHONPATH``, as
an operator would install an app for a worker (a spec only names it). After the job the demo
checks, behind the workload's back, what the issue asks of a Flower run: one metrics row per
client and round, one checkpoint per round, and each checkpoint's bytes in the object store
matching the manifest's sha256.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from orchestrator.core import JobSpec
from orchestrator.demo import SERVER_WORKER, client_worker
from orchestrator.errors import OrchestratorError
from orchestrator.storage.port import ObjectStore

FLOWER_APP_DIR = Path(__file__).resolve().parents[1] / "examples" / "flower-app"
SERVER_APP = "flower_app.server_app:app"
CLIENT_APP = "flower_app.client_app:app"


class FlowerDemoError(OrchestratorError):
    """The Flower demo cannot run here (Flower or the example app is missing)."""


def check_flower_demo() -> None:
    """Raise :class:`FlowerDemoError` saying what to install when the demo cannot run."""
    if importlib.util.find_spec("flwr") is None:
        msg = "the flower demo needs Flower: pip install -e '.[flower]'"
        raise FlowerDemoError(msg)
    if not (FLOWER_APP_DIR / "flower_app" / "server_app.py").is_file():
        msg = (f"the example Flower App is not in {FLOWER_APP_DIR} (run the demo from a "
               "source checkout: pip install -e '.[flower]')")
        raise FlowerDemoError(msg)


def flower_worker_env(env: Mapping[str, str]) -> dict[str, str]:
    """A worker's environment with the example app's directory on its ``PYTHONPATH``."""
    path = [str(FLOWER_APP_DIR), *filter(None, [env.get("PYTHONPATH")])]
    return {**env, "PYTHONPATH": os.pathsep.join(path)}


def flower_demo_spec(job_id: str, *, rounds: int, clients: int) -> JobSpec:
    """The example app with FedAvg over every client: ``rounds`` Flower rounds."""
    return JobSpec.model_validate({
        "job_id": job_id,
        "workload": "flower",
        "rounds": rounds,
        "server": {"worker": SERVER_WORKER, "config": {
            "app": SERVER_APP, "run_config": {"lr": 0.5, "min-nodes": min(2, clients)}}},
        "clients": [{"worker": client_worker(i), "config": {
            "app": CLIENT_APP, "run_config": {"local-epochs": 1}}} for i in range(clients)],
        "timeouts": {"start_s": 60, "heartbeat_s": 15, "round_s": 120,
                     "job_s": max(600, 120 * rounds)},
        "labels": {"source": "orchestrator-demo"},
    })


def outcome_problems(metrics: Sequence[Mapping[str, Any]],
                     checkpoints: Sequence[Mapping[str, Any]], *, rounds: int,
                     clients: int) -> list[str]:
    """What is missing from a finished Flower demo job's metrics and manifest."""
    problems: list[str] = []
    rows: dict[int, set[str]] = {}
    for row in metrics:
        rows.setdefault(int(row["round"]), set()).add(str(row["participant"]))
    everyone = {"server", *(f"client-{i}" for i in range(clients))}
    for round_ in range(1, rounds + 1):
        if missing := everyone - rows.get(round_, set()):
            problems.append(f"round {round_}: no metrics row for {', '.join(sorted(missing))}")
    by_round: dict[int, int] = {}
    for row in checkpoints:
        by_round[int(row["round"])] = by_round.get(int(row["round"]), 0) + 1
    for round_ in range(1, rounds + 1):
        if by_round.get(round_, 0) != 1:
            problems.append(f"round {round_}: {by_round.get(round_, 0)} checkpoints, not 1")
    return problems


async def checkpoint_problems(objects: ObjectStore,
                              checkpoints: Sequence[Mapping[str, Any]]) -> list[str]:
    """Each checkpoint read back from the object store against the manifest's sha256."""
    problems: list[str] = []
    for row in checkpoints:
        try:
            await objects.get_data(str(row["key"]), sha256=str(row["sha256"]))
        except Exception as exc:  # an integrity mismatch or a missing object: report it
            problems.append(f"checkpoint {row['key']}: {exc}")
    return problems


async def job_problems(objects: ObjectStore, metrics: Sequence[Mapping[str, Any]],
                       checkpoints: Sequence[Mapping[str, Any]], *, rounds: int,
                       clients: int) -> list[str]:
    """Every check of :func:`outcome_problems` and :func:`checkpoint_problems`."""
    return (outcome_problems(metrics, checkpoints, rounds=rounds, clients=clients)
            + await checkpoint_problems(objects, checkpoints))
