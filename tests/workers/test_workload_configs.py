"""Typed workload configuration: models per role, validated before a workload runs; the
server's config is ``server.config``; docs/workloads.md is generated from the models."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from orchestrator.core import JobSpec, Role
from workers.registry import ConfigError, get_spec, validate_config
from workers.workload_docs import page

DOC = Path(__file__).resolve().parents[2] / "docs" / "workloads.md"


def test_defaults_are_filled_in_and_unset_optionals_left_out() -> None:
    assert validate_config("sleep", Role.SERVER, {}) == {"seconds": 1.0, "step_s": 0.05}
    client = validate_config("fedavg", Role.CLIENT, {"epochs": 3})
    assert client["epochs"] == 3 and client["samples"] == 400 and "idle_timeout_s" not in client
    assert "classes" not in validate_config("fedavg", Role.SERVER, {"seed": 1})


@pytest.mark.parametrize(("name", "role", "config", "phrase"), [
    ("sleep", Role.SERVER, {"secnds": 5}, "secnds: Extra inputs are not permitted"),
    ("sleep", Role.CLIENT, {"seconds": -1}, "seconds: Input should be greater than or equal to 0"),
    ("fail", Role.SERVER, {"at_round": True}, "at_round: Input should be a valid integer"),
    ("fedavg", Role.SERVER, {"samples": 10}, "samples: Extra inputs are not permitted"),
    ("fedavg", Role.CLIENT, {"lr": "fast"}, "lr: Input should be a valid number"),
])
def test_a_bad_config_names_the_workload_role_and_field(name: str, role: Role,
                                                         config: dict[str, object],
                                                         phrase: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_config(name, role, config)
    assert f"invalid {role.value} config for workload {name!r}" in str(info.value)
    assert phrase in str(info.value)


def test_a_workload_without_models_takes_any_config() -> None:
    from workers.registry import unregister, workload  # noqa: PLC0415

    async def free(ctx: object) -> None:
        return None

    workload("free-form-test")(free)  # type: ignore[arg-type]
    try:
        assert validate_config("free-form-test", Role.CLIENT, {"x": 1}) == {"x": 1}
        assert get_spec("free-form-test").describe()["client_config"] is None
    finally:
        unregister("free-form-test")


def test_workloads_describe_their_config_schemas() -> None:
    described = get_spec("fedavg").describe()
    assert described["version"] == "1"
    assert "test_samples" in described["server_config"]["properties"]
    assert "epochs" in described["client_config"]["properties"]


def test_server_config_is_the_deprecated_name_of_server_config() -> None:
    moved = JobSpec.model_validate({"workload": "sleep", "server": {"worker": "s"},
                                    "server_config": {"seconds": 2}})
    assert moved.server.config == {"seconds": 2} and moved.server_config == {}
    with pytest.raises(ValidationError, match="given twice"):
        JobSpec.model_validate({"workload": "sleep", "server": {"worker": "s",
                                                                "config": {"seconds": 1}},
                                "server_config": {"seconds": 2}})


def test_docs_page_is_generated_from_the_models() -> None:
    assert DOC.read_text() == page(), "regenerate: python -m workers.workload_docs --write " \
                                      "docs/workloads.md"
    assert "| `test_samples` |" in page() and "| `epochs` |" in page()
