"""``orchestrator storage init`` against a real S3 server (rclone): the deployment's bucket
step. It creates a missing bucket, is idempotent, and fails naming the step with bad
credentials or (with ``--no-create-bucket``) a missing bucket."""

from __future__ import annotations

import json

from helpers import run_cli, s3_client, subprocess_env, unique

from orchestrator.devstack import stack


def _env(s3_env: dict[str, str], bucket: str, **extra: str) -> dict[str, str]:
    return subprocess_env({
        "ORCHESTRATOR_S3_URL": f"s3://{bucket}/checkpoints",
        "ORCHESTRATOR_S3_ENDPOINT_URL": s3_env["endpoint_url"],
        "AWS_ACCESS_KEY_ID": s3_env["access_key"],
        "AWS_SECRET_ACCESS_KEY": s3_env["secret_key"],
        "AWS_DEFAULT_REGION": stack.REGION,
    }, **extra)


def test_creates_the_bucket_once_and_checks_access(s3_env: dict[str, str]) -> None:
    bucket = unique("init")
    env = _env(s3_env, bucket)
    first = run_cli("storage", "init", "--json", env=env)
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["created"] is True
    assert report["checked"] == ["write", "read", "list", "delete"]
    client = s3_client(s3_env)
    assert bucket in [b["Name"] for b in client.list_buckets()["Buckets"]]
    again = run_cli("storage", "init", env=env)
    assert again.returncode == 0, again.stderr
    assert "ready (bucket present" in again.stdout
    left = client.list_objects_v2(Bucket=bucket).get("KeyCount", 0)
    assert left == 0, "the probe objects were deleted"


def test_a_missing_bucket_without_create_fails(s3_env: dict[str, str]) -> None:
    result = run_cli("storage", "init", "--no-create-bucket", env=_env(s3_env, unique("none")))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "cannot write a probe object" in result.stderr


def test_wrong_credentials_fail_clearly(s3_env: dict[str, str]) -> None:
    env = _env(s3_env, unique("denied"), AWS_SECRET_ACCESS_KEY="not-the-secret")
    result = run_cli("storage", "init", env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "s3://" in result.stderr


def test_memory_store_is_bad_input() -> None:
    result = run_cli("storage", "init", env=subprocess_env({"ORCHESTRATOR_S3_URL": "memory://x"}))
    assert result.returncode == 2
    assert "nothing to prepare" in result.stderr
