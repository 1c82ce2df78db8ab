"""Reading the deployment files for the manifest tests (offline: files only)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
COMPOSE_SCHEMA = Path(__file__).with_name("compose-spec.json")


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return doc


@cache
def compose_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(COMPOSE_SCHEMA.read_text())
    return schema


def k8s_documents() -> list[tuple[Path, dict[str, Any]]]:
    """Every YAML document under ``deploy/k8s`` with the file it is in."""
    found: list[tuple[Path, dict[str, Any]]] = []
    for path in sorted((DEPLOY / "k8s").rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                found.append((path, doc))
    return found


def one_shot(service: dict[str, Any]) -> bool:
    """A service that runs once and exits (an init job, the CLI)."""
    return service.get("restart") == "no"
