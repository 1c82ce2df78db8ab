"""The client's local checks of a spec (the same as ``orchestrator submit``'s), the forms a
spec may take (JobSpec, dict, JSON text, a path), and naming by idempotency key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.client import Client, SpecProblems, parse_spec
from orchestrator.client.specs import named, same_request
from orchestrator.core import JobSpec
from orchestrator.errors import InvalidSpecError
from orchestrator.settings import Settings

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
GOOD = {"workload": "noop", "server": {"worker": "srv"}, "clients": [{"worker": "c1"}]}


def offline_client() -> Client:
    """A client that never connects (``prepare`` needs no server)."""
    return Client(Settings(redis_url="redis://127.0.0.1:9/0", mongo_url="mongodb://127.0.0.1:9/"))


def test_every_form_of_a_spec_validates_to_the_same_spec(tmp_path: Path) -> None:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(GOOD))
    model = JobSpec.model_validate(GOOD)
    client = offline_client()
    forms: list[object] = [GOOD, json.dumps(GOOD), json.dumps(GOOD).encode(), model, path,
                           str(path)]
    for form in forms:
        spec, warnings = client.prepare(form, idempotency_key="k")  # type: ignore[arg-type]
        assert warnings == []
        assert same_request(spec, named(model, "k")), form
        assert spec.idempotency_key == "k"
        assert spec.job_id == named(model, "k").job_id  # the key names the job
    example, _ = client.prepare(str(EXAMPLES / "noop.json"))
    assert example.workload == "noop"


def test_every_problem_is_listed_with_its_field_path() -> None:
    bad = {"workload": "", "server": {"worker": "s", "config": []}, "clients": [{}]}
    with pytest.raises(SpecProblems) as info:
        parse_spec(bad, "mine")
    assert isinstance(info.value, InvalidSpecError)
    assert "3 problems" in str(info.value)
    for path in ("mine: workload:", "mine: server.config:", "mine: clients[0].worker:"):
        assert any(p.startswith(path) for p in info.value.problems), info.value.problems


@pytest.mark.parametrize(("text", "said"), [
    ('{"a": 1, "a": 2}', "a"),
    ("[1, 2]", "a job spec is a JSON object"),
    ('{"workload": ', "not valid JSON"),
])
def test_text_the_daemon_would_refuse_is_refused_locally(text: str, said: str) -> None:
    with pytest.raises(SpecProblems, match=said):
        parse_spec(text, "t")


def test_a_missing_file_and_the_deprecated_server_config(tmp_path: Path) -> None:
    with pytest.raises(SpecProblems, match="cannot read"):
        offline_client().prepare(str(tmp_path / "nope.json"))
    spec, warnings = parse_spec({**GOOD, "server_config": {"x": 1}})
    assert spec.server.config == {"x": 1}
    assert any("server_config is deprecated" in w for w in warnings)
