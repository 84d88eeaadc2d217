#!/usr/bin/env bash
# The BigQuery emulator for the offline tests, in its own virtual environment at .venv-bqemu:
# bqemulator pins duckdb 1.5.5 and brings sqlglot, so it stays out of the project's .venv.
# Starting offline needs the spatial extension from PyPI wheels, imported once under the private
# HOME the tests start the emulator with (.venv-bqemu/home). Idempotent: a stamp file records a
# finished setup for this package list, so a second run only prints its line.
#   usage: bash tests/setup_bqemulator.sh        (make test runs it)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv-bqemu"
PYTHON="${PYTHON:-python3.11}"
PACKAGES=(
    bqemulator==1.4.0 sqlglot==30.11.0 duckdb==1.5.5 duckdb-extensions==1.5.5
    duckdb-extension-spatial==1.5.5 numpy==2.4.6
)
STAMP="$VENV/.installed"
WANTED="${PACKAGES[*]}"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANTED" && -x "$VENV/bin/bqemulator" ]]; then
    echo "bqemulator: ready in .venv-bqemu"
    exit 0
fi

command -v "$PYTHON" >/dev/null || {
    echo "error: $PYTHON not found: install Python 3.11 or run PYTHON=/path/to/python3.11 $0" >&2
    exit 1
}
[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -qq --disable-pip-version-check "${PACKAGES[@]}"
mkdir -p "$VENV/home"
# the extension lands under $HOME/.duckdb, where the emulator's duckdb looks for it offline
HOME="$VENV/home" "$VENV/bin/python" -c "
import duckdb
from duckdb_extensions import import_extension
import_extension('spatial', con=duckdb.connect())
"
echo "$WANTED" >"$STAMP"
echo "bqemulator: installed in .venv-bqemu ($("$VENV/bin/python" -m pip show bqemulator | sed -n 's/^Version: //p'))"
