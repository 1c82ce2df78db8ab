#!/bin/sh
# Start Redis with the ACL users of users.acl.template (one per role, the default user off).
# Each ${REDIS_..._PASSWORD} of the template is replaced by that variable of this container's
# environment, which must be set and hold letters and digits only (e.g. `openssl rand -hex 32`),
# so no quoting can break the file. The rendered file stays inside the container (mode 0600,
# owned by redis); then the image's own entrypoint drops to the redis user.
set -eu
umask 077
template=/deploy/users.acl.template
out=/tmp/users.acl
cp "$template" "$out.new"
for var in $(grep -o '\${REDIS_[A-Z0-9_]*_PASSWORD}' "$template" | tr -d '${}' | sort -u); do
    eval "value=\${$var:-}"
    if [ -z "$value" ]; then
        echo "redis: $var is not set (see deploy/README.md)" >&2
        exit 1
    fi
    case "$value" in
        *[!A-Za-z0-9]*) echo "redis: $var must be letters and digits only" >&2; exit 1 ;;
    esac
    sed -i "s/\${$var}/$value/g" "$out.new"
done
mv "$out.new" "$out"
chown redis:redis "$out"
exec docker-entrypoint.sh redis-server \
    --appendonly yes --appendfsync everysec --maxmemory-policy noeviction \
    --aclfile "$out"
