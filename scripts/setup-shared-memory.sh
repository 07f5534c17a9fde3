#!/usr/bin/env bash
# Builds the collectives' shared-memory addon (collectives/native/shared_memory.c) into
# .tools/shm/: trainers on one host then all-reduce through shared memory instead of loopback TCP.
# A single C file against N-API: compiled with cc and the headers of the Node that runs this
# script (else npm's node-api-headers, pinned). Rebuilt when the source changes.
# It never fails set-up: on any problem it says why and exits 0; the collectives then use TCP only
# (CollectiveGroup.transport says why).
NODE_API_HEADERS_VERSION=1.9.0   # only where Node's own headers are missing

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SOURCE="$ROOT/collectives/native/shared_memory.c"
OUT_DIR="$ROOT/.tools/shm"
ADDON="$OUT_DIR/gantry_shared_memory.node"
STAMP="$OUT_DIR/source.sha256"

say() { printf '[setup-shared-memory] %s\n' "$*"; }
give_up() { say "not built: $* — all-reduce will use TCP only"; exit 0; }

loads() {
  node -e '
    const addon = require(process.argv[1]);
    const word = new Int32Array(1);
    if (addon.wait(word, 0, 1, 0) !== "ok" || typeof addon.wake(word, 0) !== "number") {
      throw new Error("futex calls misbehave");
    }
    const out = new Float32Array(3);
    addon.sum([out], [Float32Array.of(1, 2, 3), Float32Array.of(4, 5, 6)], 0.5);
    if (out.join() !== "2.5,3.5,4.5") throw new Error("sum gave " + out.join());
  ' "$1"
}

[ "$(uname -s)" = Linux ] || give_up "shared-memory collectives need Linux"
want="$(sha256sum "$SOURCE" | cut -d' ' -f1)"
if [ -f "$ADDON" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$want" ] && loads "$ADDON" 2>/dev/null; then
  say "up to date: ${ADDON#"$ROOT/"}"
  exit 0
fi

CC="${CC:-cc}"
command -v "$CC" >/dev/null || CC=gcc
command -v "$CC" >/dev/null || give_up "no C compiler (cc or gcc; Debian: apt-get install gcc)"
include="$(node -p 'require("path").resolve(process.execPath, "../../include/node")')"
if [ ! -f "$include/node_api.h" ]; then
  hdr="$ROOT/.tools/native/tools/node-api-headers-$NODE_API_HEADERS_VERSION"
  if [ ! -f "$hdr/node_modules/node-api-headers/include/node_api.h" ]; then
    say "no Node headers at $include: installing node-api-headers@$NODE_API_HEADERS_VERSION from npm"
    mkdir -p "$hdr" &&
      (cd "$hdr" && npm install --no-audit --no-fund --no-save --ignore-scripts \
        "node-api-headers@$NODE_API_HEADERS_VERSION" >/dev/null 2>&1) ||
      give_up "could not install node-api-headers"
  fi
  include="$hdr/node_modules/node-api-headers/include"
fi

mkdir -p "$OUT_DIR"
tmp="$(mktemp "$OUT_DIR/build.XXXXXX.node")"
trap 'rm -f "$tmp"' EXIT
if ! "$CC" -O3 -Wall -Wextra -shared -fPIC -DNODE_GYP_MODULE_NAME=gantry_shared_memory \
  -I"$include" -o "$tmp" "$SOURCE" 2>"$tmp.log"; then
  cat "$tmp.log" >&2
  rm -f "$tmp.log"
  give_up "$CC failed (above)"
fi
rm -f "$tmp.log"
loads "$tmp" || give_up "the built addon does not load"
mv "$tmp" "$ADDON"
echo "$want" >"$STAMP"
say "built ${ADDON#"$ROOT/"} ($CC, headers from $include)"
