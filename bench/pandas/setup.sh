#!/usr/bin/env bash
# The Python side of bench/tabular-ingest: pandas (pinned) in .tools/bench-venv, created on the first run of the
# bench and reused after. Only that benchmark needs it; neither setup nor the tests run it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PANDAS_VERSION=3.1.1
VENV="$ROOT/.tools/bench-venv"
if "$VENV/bin/python" -c "import pandas, sys; sys.exit(pandas.__version__ != '$PANDAS_VERSION')" 2>/dev/null; then
  exit 0
fi
echo "[pandas-bench] installing pandas==$PANDAS_VERSION into ${VENV#"$ROOT/"}" >&2
rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check "pandas==$PANDAS_VERSION" >&2
