#!/usr/bin/env bash
# The Python side of bench/train-throughput: Keras on the same tensorflow-cpu wheel whose
# libtensorflow the native tfjs backend links (scripts/setup-native.sh pins the version). Installs
# into .tools/keras-venv, reusing the wheel that setup-native.sh downloaded. Only the benchmark
# needs it; `make setup` does not run it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VERSION="$(sed -n 's/^TENSORFLOW_CPU_VERSION=\([0-9.]*\).*/\1/p' "$ROOT/scripts/setup-native.sh")"
VENV="$ROOT/.tools/keras-venv"
if "$VENV/bin/python" -c "import tensorflow as tf, sys; sys.exit(tf.__version__ != '$VERSION')" 2>/dev/null; then
  exit 0
fi
echo "[keras-bench] installing tensorflow-cpu==$VERSION into ${VENV#"$ROOT/"}" >&2
rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check --find-links "$ROOT/.tools/native/downloads" \
  "tensorflow-cpu==$VERSION" >&2
