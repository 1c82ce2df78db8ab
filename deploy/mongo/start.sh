#!/bin/sh
# Start one member of the replica set with the shared keyFile (internal authentication).
# mongod refuses a keyFile that others can read, and a compose secret is mounted read-only
# and world-readable, so copy it to a file of mongodb's own, mode 0400, then hand over to the
# image's entrypoint (which creates the root user from MONGO_INITDB_ROOT_* on an empty data
# directory, on the first member only).
set -eu
install -m 0400 -o mongodb -g mongodb /run/secrets/mongo_keyfile /etc/mongo-keyfile
exec docker-entrypoint.sh mongod --replSet rs0 --bind_ip_all --keyFile /etc/mongo-keyfile "$@"
