#!/usr/bin/env bash
# Install (if needed) and start a throwaway PostgreSQL server on loopback for the multi-worker
# tests; prints the storage URL to use. PostgreSQL refuses to run as root, so as root it runs as
# the 'postgres' user that Debian's package creates.
set -euo pipefail
port=${1:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >/dev/null
fi
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
data=$(mktemp -d /tmp/tuner-pg.XXXXXX)
as=()
if [ "$(id -u)" = 0 ]; then chown postgres "$data"; as=(runuser -u postgres --); fi
"${as[@]}" "$bin/initdb" -D "$data" -A trust -U postgres >/dev/null
"${as[@]}" "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w \
  -o "-p $port -c listen_addresses=127.0.0.1 -k $data -c max_connections=200" start >/dev/null
echo "postgresql://postgres@127.0.0.1:$port/postgres"
