#!/usr/bin/env bash
# A throwaway MariaDB server on loopback, for the tests of a storage the tuner's row writes do not
# serve (MySQL's dialect): installed if missing, and left out where it cannot be installed.
#
#   bash .ci/mariadb.sh COMMAND ...   runs COMMAND with TUNER_TEST_MYSQL set to the server's URL,
#                                     then stops the server and deletes its files (also after a
#                                     failure or Ctrl-C), and exits with COMMAND's status; where no
#                                     server can be had, runs COMMAND without it (those tests skip)
#
# The server runs as the 'mysql' user that Debian's package creates when this runs as root, with
# its grant tables off: a test server on 127.0.0.1 that lives as long as COMMAND.
set -euo pipefail
if ! command -v mariadbd >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mariadb-server) >/dev/null 2>&1 || true
fi
if ! command -v mariadbd >/dev/null 2>&1 || ! python3 -c 'import pymysql' 2>/dev/null; then
  echo "note: no MariaDB server or no pymysql here: the MySQL storage tests are skipped" >&2
  exec "$@"
fi
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
data=$(mktemp -d /tmp/tuner-mariadb.XXXXXX)
user=()
if [ "$(id -u)" = 0 ]; then chown mysql "$data"; user=(--user=mysql); fi

stop() {
  if [ -f "$data/pid" ]; then kill "$(cat "$data/pid")" 2>/dev/null || true; fi
  for _ in $(seq 50); do [ -f "$data/pid" ] || break; sleep 0.1; done
  rm -rf "$data"
}
trap stop EXIT
trap 'exit 130' INT  # exit, so that the EXIT trap runs
trap 'exit 143' TERM

mariadb-install-db --datadir="$data/db" "${user[@]}" --skip-test-db >/dev/null 2>&1
mariadbd --no-defaults --datadir="$data/db" "${user[@]}" --socket="$data/sock" --port="$port" \
  --bind-address=127.0.0.1 --pid-file="$data/pid" --skip-grant-tables --log-error="$data/server.log" >"$data/server.out" 2>&1 &
for _ in $(seq 100); do
  python3 -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('127.0.0.1', $port)))" && break
  sleep 0.2
done
status=0
TUNER_TEST_MYSQL="mysql+pymysql://root@127.0.0.1:$port/mysql" "$@" || status=$?
exit "$status"
