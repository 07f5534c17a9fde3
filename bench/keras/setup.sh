#!/usr/bin/env bash
# Python TensorFlow on the same tensorflow-cpu wheel whose libtensorflow the native tfjs backend links
# (scripts/setup-native.sh pins the version): Keras for the benches, and TensorFlow's own answers and
# SavedModels for the tests (`make test` runs this; `make demo` does not need it). Installs into
# .tools/keras-venv, reusing the wheel that setup-native.sh downloaded. Test files that call it at once
# wait for each other on a lock instead of building the venv twice.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VERSION="$(sed -n 's/^TENSORFLOW_CPU_VERSION=\([0-9.]*\).*/\1/p' "$ROOT/scripts/setup-native.sh")"
VENV="$ROOT/.tools/keras-venv"
mkdir -p "$ROOT/.tools"
exec 9>"$ROOT/.tools/keras-venv.lock"
flock 9
if "$VENV/bin/python" -c "import tensorflow as tf, sys; sys.exit(tf.__version__ != '$VERSION')" 2>/dev/null; then
  exit 0
fi
echo "[keras-bench] installing tensorflow-cpu==$VERSION into ${VENV#"$ROOT/"}" >&2
rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check --find-links "$ROOT/.tools/native/downloads" \
  "tensorflow-cpu==$VERSION" >&2
