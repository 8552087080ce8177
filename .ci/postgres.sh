#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback for the multi-worker tests, installed if missing.
#
#   bash .ci/postgres.sh COMMAND ...   runs COMMAND with TUNER_TEST_POSTGRES set to the server's URL,
#                                      then stops the server and deletes its files (also after a
#                                      failure or Ctrl-C), and exits with COMMAND's status
#   bash .ci/postgres.sh               prints the URL and leaves the server running (stderr says
#                                      how to stop it)
#
# PostgreSQL refuses to run as root, so as root it runs as the 'postgres' user that Debian's
# package creates.
set -euo pipefail
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >/dev/null
fi
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
data=$(mktemp -d /tmp/tuner-pg.XXXXXX)
as=()
if [ "$(id -u)" = 0 ]; then chown postgres "$data"; as=(runuser -u postgres --); fi

# Whatever happens from here on, the server this script started goes away with the script.
stop() {
  "${as[@]}" "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$data"
}
trap stop EXIT
trap 'exit 130' INT  # exit, so that the EXIT trap runs
trap 'exit 143' TERM

"${as[@]}" "$bin/initdb" -D "$data" -A trust -U postgres >/dev/null
"${as[@]}" "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w \
  -o "-p $port -c listen_addresses=127.0.0.1 -k $data -c max_connections=200" start >/dev/null
url="postgresql://postgres@127.0.0.1:$port/postgres"

if [ $# = 0 ]; then
  trap - EXIT
  echo "stop it with: ${as[*]} $bin/pg_ctl -D $data stop && rm -rf $data" >&2
  echo "$url"
  exit 0
fi
status=0
TUNER_TEST_POSTGRES=$url "$@" || status=$?
exit "$status"
