#!/usr/bin/env bash
# Judges the newest Optuna on the package index before the pin in pyproject.toml admits it: installs
# it into a throwaway virtual environment beside this Python's packages, runs the row tests with the
# fence forced open (the row writes on SQLite and, where TUNER_TEST_POSTGRES names a server,
# PostgreSQL, whatever the version), and prints one verdict line.
#
#   bash .ci/newest_optuna.sh     always exits 0: a new Optuna minor on the index must not block
#                                 unrelated work; the verdict says whether the pin may be widened
set -uo pipefail
cd "$(dirname "$0")/.."
venv=$(mktemp -d /tmp/tuner-newest-optuna.XXXXXX)
trap 'rm -rf "$venv"' EXIT
verdict() { echo "NEWEST OPTUNA VERDICT: $*"; exit 0; }

python3 -m venv --system-site-packages "$venv" || verdict "could not judge (no virtual environment)"
"$venv/bin/pip" install -q --upgrade optuna >"$venv/pip.log" 2>&1 || verdict "could not judge (pip failed: $(tail -n 1 "$venv/pip.log"))"
version=$("$venv/bin/python" -c 'import optuna; print(optuna.__version__)')
pinned=$("$venv/bin/python" -c 'from tuner.study._fence import TESTED_OPTUNA; print(", ".join(TESTED_OPTUNA))')
# What the fence says of this Optuna's own tables (the version aside).
fence=$(PYTHONPATH=$PWD "$venv/bin/python" - <<'PY'
import tempfile
from tuner.study._fence import schema_gaps
from tuner.study._store import TunerStorage
storage = TunerStorage(f"sqlite:///{tempfile.mkdtemp()}/fence.db")
print("; ".join(schema_gaps(storage)) or "its tables match the tested ones")
PY
)
PYTHONPATH=$PWD TUNER_ROWS_FENCE=open "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/tuner/test_rows.py
status=$?
minor=${version%.*}
case ", $pinned," in *", $minor,"*) within="within the tested minors ($pinned)" ;; *) within="NOT within the tested minors ($pinned)" ;; esac
if [ "$status" = 0 ]; then
  verdict "Optuna $version, $within: the row tests pass with the fence forced open; $fence"
else
  verdict "Optuna $version, $within: the row tests FAIL with the fence forced open (status $status); $fence; keep the pin"
fi
