#!/usr/bin/env bash
# Builds TensorFlow.js's native Node backend (@tensorflow/tfjs-node) without its install script.
#
# Its install script downloads libtensorflow from a host this network refuses, so npm drops the
# optional package. Here the same package is taken from the npm registry without running scripts,
# libtensorflow is taken from PyPI's tensorflow-cpu wheel (libtensorflow_cc.so.2 carries the TF_*/
# TFE_* C API the addon calls), the addon is compiled with node-gyp against the local Node headers
# (no header download), and the result is placed in node_modules/@tensorflow/tfjs-node with its
# runtime dependencies nested inside it.
#
# Safe to run again: it does nothing when the package already loads with the "tensorflow" backend.
# Downloads and the finished build are cached under .tools/native/ (gitignored).
# It never fails set-up: on any problem it says why and exits 0; Gantry then falls back to wasm.
#
#   bash scripts/setup-native.sh            # build if needed, install into node_modules
#   GANTRY_NATIVE_FORCE=1 bash scripts/...  # rebuild from the cached downloads
#   GANTRY_SKIP_NATIVE=1 bash scripts/...   # do nothing
#   GANTRY_NATIVE_DIRECT_CXX=1 bash ...     # compile with g++ directly instead of node-gyp
#
# Run it after `npm ci` (which empties node_modules and so removes the built package).

# ---- pinned versions --------------------------------------------------------------------------
TFJS_NODE_VERSION=4.22.0            # must equal package.json's optionalDependencies entry
TENSORFLOW_CPU_VERSION=2.20.0       # PyPI wheel that supplies libtensorflow (C API, CPU)
TENSORFLOW_CPU_PLATFORM=manylinux_2_17_x86_64   # the wheel's platform tag (2.21+ are manylinux_2_27_x86_64)
# sha256 of tensorflow_cpu-2.20.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl
# (empty: not checked; pip still checks PyPI's own hash)
TENSORFLOW_CPU_SHA256=cf756bbe2d256e942ab5d0ad2c858fb40017581494febdb4387c149b1afde780
NODE_GYP_VERSION=12.4.0             # needs node ^20.17 || >=22.9
NODE_API_HEADERS_VERSION=1.9.0      # only where Node's own headers are missing (then g++ is run directly)
# The addon's runtime dependencies (what dist/ requires when loaded; versions as in package-lock.json).
NODE_PRE_GYP_VERSION=1.0.9
GOOGLE_PROTOBUF_VERSION=3.21.4
PROGRESS_VERSION=2.0.3
RECIPE=1                            # bump when this script changes what it builds: forces a rebuild
# -----------------------------------------------------------------------------------------------

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$ROOT/.tools/native"
BUILD_ID="tfjs-node-$TFJS_NODE_VERSION-tf-$TENSORFLOW_CPU_VERSION-r$RECIPE"
TARGET="$ROOT/node_modules/@tensorflow/tfjs-node"

say() { printf '[setup-native] %s\n' "$*"; }
fail() { printf '[setup-native] ERROR: %s\n' "$*" >&2; exit 1; }

# Succeeds when @tensorflow/tfjs-node, resolved from the project root as Gantry resolves it, loads,
# registers the "tensorflow" backend and computes a matMul.
loads() {
  (cd "$ROOT" && TF_CPP_MIN_LOG_LEVEL=2 node -e '
    const tf = require("@tensorflow/tfjs-node");
    if (tf.getBackend() !== "tensorflow") throw new Error("backend is " + tf.getBackend());
    const v = tf.matMul(tf.tensor2d([[1, 2], [3, 4]]), tf.tensor2d([[1, 0], [0, 1]])).dataSync();
    if (v.join() !== "1,2,3,4") throw new Error("matMul gave " + v.join());
    console.log("loads: backend tensorflow, libtensorflow " + tf.backend().binding.TF_Version);
  ')
}

main() {
  set -Eeuo pipefail
  trap 'printf "[setup-native] command failed (line %s): %s\n" "$LINENO" "$BASH_COMMAND" >&2' ERR

  if [ "${GANTRY_SKIP_NATIVE:-0}" = 1 ]; then say "GANTRY_SKIP_NATIVE=1: skipped"; return 0; fi
  [ "$(uname -s)-$(uname -m)" = Linux-x86_64 ] ||
    fail "only Linux x86_64 is supported here (this is $(uname -s)-$(uname -m))"
  command -v node >/dev/null || fail "node is not on PATH"
  [ -d "$ROOT/node_modules/@tensorflow/tfjs" ] || fail "node_modules/@tensorflow/tfjs is missing: run npm ci first"

  # Up to date: our build of these pinned versions, or a package npm installed itself (where the
  # network allowed its install script), and it loads.
  if [ "${GANTRY_NATIVE_FORCE:-0}" != 1 ] && [ -d "$TARGET" ] \
    && { [ ! -f "$TARGET/.gantry-native-build" ] || [ "$(cat "$TARGET/.gantry-native-build")" = "$BUILD_ID" ]; } \
    && loads 2>/dev/null; then
    say "@tensorflow/tfjs-node already loads: nothing to do"
    return 0
  fi

  mkdir -p "$CACHE/downloads"
  # One run at a time (a second waits for the first).
  if command -v flock >/dev/null; then exec 9>"$CACHE/.lock"; flock 9; fi

  local build="$CACHE/build/$BUILD_ID"
  local pkg="$build/tfjs-node"
  if [ "${GANTRY_NATIVE_FORCE:-0}" != 1 ] && [ "$(cat "$pkg/.gantry-native-build" 2>/dev/null)" = "$BUILD_ID" ]; then
    say "using the cached build in ${build#"$ROOT/"}"
    install_into_project "$pkg"
    if loads; then say "done: Gantry will train on the native TensorFlow backend"; return 0; fi
    say "the cached build does not load: building it again"
  fi

  rm -rf "$build"
  mkdir -p "$build"
  ensure_toolchain
  fetch_tfjs_node "$build"
  fetch_libtensorflow "$pkg"
  check_symbols "$pkg"
  compile_addon "$pkg"
  add_runtime_deps "$pkg"
  echo "$BUILD_ID" >"$pkg/.gantry-native-build"
  install_into_project "$pkg"
  say "checking that it loads from the project"
  loads || fail "the built package does not load (see the error above)"
  # Builds and wheels of other pinned versions are no longer needed.
  find "$CACHE/build" -mindepth 1 -maxdepth 1 -name 'tfjs-node-*' ! -name "$BUILD_ID" -exec rm -rf {} +
  find "$CACHE/downloads" -maxdepth 1 \
    \( -name 'tensorflow_cpu-*.whl' ! -name "tensorflow_cpu-$TENSORFLOW_CPU_VERSION-*" \
    -o -name 'tensorflow-tfjs-node-*.tgz' ! -name "tensorflow-tfjs-node-$TFJS_NODE_VERSION.tgz" \) -delete
  say "done: Gantry will train on the native TensorFlow backend"
}

# g++, make and python3 (node-gyp runs gyp with python3; pip fetches the wheel).
ensure_toolchain() {
  local missing=()
  command -v g++ >/dev/null || missing+=(g++)
  command -v make >/dev/null || missing+=(make)
  command -v python3 >/dev/null || missing+=(python3)
  python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
  command -v nm >/dev/null || missing+=(binutils)
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
      fail "missing ${missing[*]} and cannot apt-get them (not root, or no apt-get)"
    fi
    say "installing ${missing[*]} with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  fi
}

# The npm package's files, unpacked, without running its install script.
fetch_tfjs_node() {
  local build="$1" tgz="$CACHE/downloads/tensorflow-tfjs-node-$TFJS_NODE_VERSION.tgz"
  if [ ! -s "$tgz" ]; then
    say "downloading @tensorflow/tfjs-node@$TFJS_NODE_VERSION from npm (npm pack, no scripts run)"
    (cd "$CACHE/downloads" && npm pack --silent "@tensorflow/tfjs-node@$TFJS_NODE_VERSION" >/dev/null)
  fi
  [ -s "$tgz" ] || fail "npm pack did not produce $tgz"
  tar -xzf "$tgz" -C "$build"
  mv "$build/package" "$build/tfjs-node"
  [ -f "$build/tfjs-node/binding.gyp" ] || fail "the tfjs-node package has no binding.gyp"
}

# deps/lib and deps/include as binding.gyp wants them, from the tensorflow-cpu wheel.
fetch_libtensorflow() {
  local pkg="$1" whl
  wheel() { find "$CACHE/downloads" -maxdepth 1 -name "tensorflow_cpu-$TENSORFLOW_CPU_VERSION-cp311-*.whl" | head -1; }
  sha_ok() { [ -z "$TENSORFLOW_CPU_SHA256" ] || [ "$(sha256sum <"$1" | cut -d' ' -f1)" = "$TENSORFLOW_CPU_SHA256" ]; }
  whl="$(wheel)"
  if [ -z "$whl" ] || ! sha_ok "$whl"; then
    [ -z "$whl" ] || rm -f "$whl"
    say "downloading tensorflow-cpu==$TENSORFLOW_CPU_VERSION from PyPI (~260 MB; only its libtensorflow is used)"
    # The CPython 3.11 wheel whatever the local Python is: the C library inside does not depend on it.
    python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
      --platform "$TENSORFLOW_CPU_PLATFORM" --python-version 3.11 --implementation cp --abi cp311 \
      -d "$CACHE/downloads" "tensorflow-cpu==$TENSORFLOW_CPU_VERSION"
    whl="$(wheel)"
    [ -n "$whl" ] || fail "pip did not download a tensorflow-cpu $TENSORFLOW_CPU_VERSION wheel"
    sha_ok "$whl" || fail "$(basename "$whl") does not have the pinned sha256 $TENSORFLOW_CPU_SHA256"
  fi
  [ -n "$TENSORFLOW_CPU_SHA256" ] || say "sha256 of $(basename "$whl"): $(sha256sum <"$whl" | cut -d' ' -f1)"

  say "unpacking libtensorflow_cc.so.2, libtensorflow_framework.so.2 and the C API headers"
  python3 - "$whl" "$pkg/deps" <<'PY'
import os, shutil, sys, zipfile
whl, deps = sys.argv[1], sys.argv[2]
libs = {'tensorflow/libtensorflow_cc.so.2', 'tensorflow/libtensorflow_framework.so.2'}
# The C API headers and what they include (tf_tstring.h -> tsl/platform/ctstring*.h, tsl/c, xla/tsl/c).
headers = tuple('tensorflow/include/' + p for p in ('tensorflow/c/', 'tensorflow/core/platform/', 'tsl/', 'xla/tsl/'))
found = set()
with zipfile.ZipFile(whl) as z:
    for info in z.infolist():
        name = info.filename
        if info.is_dir():
            continue
        if name in libs:
            dest = os.path.join(deps, 'lib', os.path.basename(name)); found.add(name)
        elif name.startswith(headers) and name.endswith(('.h', '.inc')):
            dest = os.path.join(deps, 'include', name[len('tensorflow/include/'):])
        else:
            continue
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with z.open(info) as src, open(dest, 'wb') as out:
            shutil.copyfileobj(src, out, 1 << 20)
missing = libs - found
if missing:
    sys.exit('the wheel lacks ' + ', '.join(sorted(missing)))
PY
  # binding.gyp links -ltensorflow -ltensorflow_framework; the sonames recorded in the addon are the
  # real ones (libtensorflow_cc.so.2, libtensorflow_framework.so.2), found at run time through the
  # addon's RUNPATH $ORIGIN/../../deps/lib.
  ln -sfn libtensorflow_cc.so.2 "$pkg/deps/lib/libtensorflow.so"
  ln -sfn libtensorflow_framework.so.2 "$pkg/deps/lib/libtensorflow_framework.so"
  if [ ! -f "$pkg/deps/include/tensorflow/c/c_api.h" ] || [ ! -f "$pkg/deps/include/tensorflow/c/eager/c_api.h" ]; then
    fail "the wheel lacks the TensorFlow C API headers"
  fi
}

# Every TF_/TFE_ function the binding calls must be exported by the wheel's libraries; a
# missing one would otherwise show only as an undefined symbol when Node loads the addon.
check_symbols() {
  local pkg="$1" wanted exported missing
  wanted="$(grep -ohE '\bTFE?_[A-Z][A-Za-z0-9_]*[[:space:]]*\(' "$pkg"/binding/*.cc "$pkg"/binding/*.h \
    | tr -d '( \t' | sort -u \
    | grep -vE '^(TF_Auto(Status|Tensor)|TFE_AutoOp|TF_TString_.*)$')"   # the binding's own classes; inline helpers
  exported="$(for f in "$pkg"/deps/lib/*.so.2; do nm -D --defined-only "$f"; done \
    | awk '{print $3}' | sed 's/@.*//' | sort -u)"
  missing="$(comm -23 <(echo "$wanted") <(echo "$exported"))"
  [ -z "$missing" ] || fail "tensorflow-cpu $TENSORFLOW_CPU_VERSION does not export: $(echo "$missing" | tr '\n' ' ')"
  say "C API check: all $(echo "$wanted" | wc -l) TF_/TFE_ functions the binding calls are exported"
}

# Compiles lib/napi-v<N>/tfjs_binding.node for the highest N-API version the package supports
# here: with node-gyp against the headers of the Node that runs this script (no header download);
# where that Node has no headers, or node-gyp fails, with g++ directly against npm's
# node-api-headers (the binding uses N-API only) and the flags node-gyp would use.
compile_addon() {
  local pkg="$1" napi_build nodedir
  napi_build="$(cd "$pkg" && node -p 'Math.max(...require("./package.json").binary.napi_versions
    .filter((v) => v <= Number(process.versions.napi)))')"
  [ "$napi_build" -ge 3 ] 2>/dev/null || fail "this Node's N-API ($(node -p process.versions.napi)) is too old"
  nodedir="$(node -p 'require("path").resolve(process.execPath, "../..")')"
  local addon="$pkg/lib/napi-v$napi_build/tfjs_binding.node" log="$CACHE/build/compile.log" started=$SECONDS
  local built=0
  if [ "${GANTRY_NATIVE_DIRECT_CXX:-0}" = 1 ]; then
    say "GANTRY_NATIVE_DIRECT_CXX=1: not using node-gyp"
  elif [ ! -f "$nodedir/include/node/node_api.h" ] || [ ! -f "$nodedir/include/node/common.gypi" ]; then
    say "no Node headers at $nodedir/include/node: not using node-gyp"
  else
    local gyp="$CACHE/tools/node-gyp-$NODE_GYP_VERSION"
    if [ ! -x "$gyp/node_modules/.bin/node-gyp" ]; then
      say "installing node-gyp@$NODE_GYP_VERSION from npm into ${gyp#"$ROOT/"}"
      npm_tool "$gyp" "node-gyp@$NODE_GYP_VERSION"
    fi
    say "compiling the addon with node-gyp (N-API $napi_build, Node headers from $nodedir/include/node)"
    if (cd "$pkg" && "$gyp/node_modules/.bin/node-gyp" rebuild --loglevel=warn \
        --nodedir="$nodedir" --devdir="$CACHE/tools/node-gyp-devdir" --jobs="$(nproc)" \
        --napi_build_version="$napi_build" --module_name=tfjs_binding \
        --module_path="$pkg/lib/napi-v$napi_build") >"$log" 2>&1 \
      && [ -f "$addon" ]; then
      built=1
    else
      tail -20 "$log" >&2
      say "node-gyp failed (log above); trying g++ directly"
    fi
    rm -rf "$pkg/build"   # intermediate objects
  fi
  if [ $built = 0 ]; then
    local hdr="$CACHE/tools/node-api-headers-$NODE_API_HEADERS_VERSION"
    if [ ! -f "$hdr/node_modules/node-api-headers/include/node_api.h" ]; then
      say "installing node-api-headers@$NODE_API_HEADERS_VERSION from npm into ${hdr#"$ROOT/"}"
      npm_tool "$hdr" "node-api-headers@$NODE_API_HEADERS_VERSION"
    fi
    say "compiling the addon with g++ (N-API $napi_build, headers from node-api-headers@$NODE_API_HEADERS_VERSION)"
    mkdir -p "$(dirname "$addon")"
    # shellcheck disable=SC2016 # $ORIGIN is for the dynamic linker, not the shell
    (cd "$pkg" && g++ -shared -fPIC -pthread -m64 -O3 -fno-omit-frame-pointer -fno-rtti -fno-exceptions -std=gnu++17 \
        -Wall -Wextra -Wno-unused-parameter \
        -DNAPI_VERSION="$napi_build" -DNODE_GYP_MODULE_NAME=tfjs_binding -DBUILDING_NODE_EXTENSION \
        -D_GLIBCXX_USE_CXX11_ABI=1 \
        -I.. -Ideps/include -I"$hdr/node_modules/node-api-headers/include" \
        binding/tfjs_backend.cc binding/tfjs_binding.cc \
        -Ldeps/lib -Wl,-rpath,'$ORIGIN/../../deps/lib' -ltensorflow -ltensorflow_framework \
        -o "$addon") >"$log" 2>&1 || { tail -30 "$log" >&2; fail "g++ failed (log: ${log#"$ROOT/"})"; }
  fi
  [ -f "$addon" ] || fail "the compiler finished but $addon is missing"
  say "built ${addon#"$pkg/"} in $((SECONDS - started)) s"
  if command -v ldd >/dev/null && ldd "$addon" | grep -q 'not found'; then
    ldd "$addon" >&2; fail "the addon has unresolved libraries"
  fi
}

# npm_tool DIR SPEC: a pinned npm package in its own folder, scripts not run.
npm_tool() {
  rm -rf "$1"
  mkdir -p "$1"
  (cd "$1" && echo '{"private":true}' >package.json && npm install --silent --no-audit --no-fund --ignore-scripts "$2")
}

# What dist/ requires at load time and is not in the project's node_modules, nested inside the
# package (its own @tensorflow/tfjs is NOT nested: it must share the project's tfjs engine).
add_runtime_deps() {
  local pkg="$1" stage="$CACHE/build/runtime-deps"
  say "installing its runtime dependencies from npm (@mapbox/node-pre-gyp@$NODE_PRE_GYP_VERSION," \
    "google-protobuf@$GOOGLE_PROTOBUF_VERSION, progress@$PROGRESS_VERSION)"
  rm -rf "$stage"
  mkdir -p "$stage"
  cat >"$stage/package.json" <<JSON
{"private": true, "dependencies": {"@mapbox/node-pre-gyp": "$NODE_PRE_GYP_VERSION",
  "google-protobuf": "$GOOGLE_PROTOBUF_VERSION", "progress": "$PROGRESS_VERSION"}}
JSON
  (cd "$stage" && npm install --silent --no-audit --no-fund --ignore-scripts --omit=dev --no-package-lock)
  rm -rf "$pkg/node_modules"
  mv "$stage/node_modules" "$pkg/node_modules"
  rm -rf "$stage"
  # The package as installed must never try to rebuild itself: npm would run scripts/install.js
  # (which wipes deps/ and downloads) or, without it, `node-gyp rebuild` (downloads headers).
  # Its dependencies are cut to what it loads (adm-zip, https-proxy-agent, rimraf and tar serve
  # only scripts/install.js), so that `npm ls` finds the tree valid.
  (cd "$pkg" && node -e '
    const fs = require("fs"); const p = JSON.parse(fs.readFileSync("package.json", "utf8"));
    delete p.scripts.install; p.gypfile = false;
    const keep = ["@mapbox/node-pre-gyp", "@tensorflow/tfjs", "google-protobuf", "progress"];
    p.dependencies = Object.fromEntries(Object.entries(p.dependencies).filter(([name]) => keep.includes(name)));
    fs.writeFileSync("package.json", JSON.stringify(p, null, 2) + "\n");')
  # Not needed at run time.
  rm -rf "$pkg/deps/include" "$pkg/src" "$pkg/python"
}

# node_modules/@tensorflow/tfjs-node: hard links to the cached build where the file system allows
# (the 780 MB of libtensorflow are then stored once), otherwise a copy. Swapped in whole.
install_into_project() {
  local pkg="$1" tmp="$ROOT/node_modules/@tensorflow/.tfjs-node.$$"
  say "installing into node_modules/@tensorflow/tfjs-node"
  rm -rf "$tmp"
  cp -al "$pkg" "$tmp" 2>/dev/null || { rm -rf "$tmp"; cp -a "$pkg" "$tmp"; }
  rm -rf "$TARGET"
  mv "$tmp" "$TARGET"
}

set +e
( main )
status=$?
if [ $status -ne 0 ]; then
  say "native TensorFlow backend NOT installed (see the reason above); Gantry will fall back to the wasm backend."
fi
exit 0
