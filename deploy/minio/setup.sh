#!/bin/sh
# One-shot, idempotent: the bucket, and the application's own S3 user with a policy limited to
# that bucket (minio/policy.json names it), so the daemon and workers never hold MinIO's root
# credentials. Only sh and mc are used (the mc image has little else).
set -eu
mc alias set root http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null
mc mb --ignore-existing "root/$S3_BUCKET"
mc admin policy create root orchestrator-app /deploy/policy.json
mc admin user add root "$S3_ACCESS_KEY" "$S3_SECRET_KEY"
# attach fails when the policy is attached already: detach first, so a re-run ends the same
mc admin policy detach root orchestrator-app --user "$S3_ACCESS_KEY" >/dev/null 2>&1 || true
mc admin policy attach root orchestrator-app --user "$S3_ACCESS_KEY"
echo "minio-setup: bucket $S3_BUCKET and user $S3_ACCESS_KEY ready"
