#!/usr/bin/env bash
# ghz (github.com/bojand/ghz), the Go gRPC load generator bench/serving.ts drives its gRPC cells with, so that
# the load generator is not the bottleneck (a Node client saturates its one core first). Built once with
# `go install` through the Go module proxy into .tools/ghz (cached: a no-op when the pinned version is there).
# Benches only: never run by CI or by the server. Needs Go (>= 1.21); exits 1 naming what is missing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VERSION=v0.93.0
DIR="$ROOT/.tools/ghz"
mkdir -p "$ROOT/.tools"
exec 9>"$ROOT/.tools/ghz.lock"
flock 9
if [ -x "$DIR/bin/ghz" ] && [ "$(cat "$DIR/VERSION" 2>/dev/null)" = "$VERSION" ]; then
  exit 0
fi
if ! command -v go >/dev/null; then
  echo "[ghz] Go is not installed: install Go >= 1.21 to build ghz $VERSION" >&2
  exit 1
fi
echo "[ghz] building github.com/bojand/ghz/cmd/ghz@$VERSION into ${DIR#"$ROOT/"}" >&2
rm -rf "$DIR"
mkdir -p "$DIR"
GOBIN="$DIR/bin" GOFLAGS=-mod=mod go install "github.com/bojand/ghz/cmd/ghz@$VERSION" >&2
echo "$VERSION" >"$DIR/VERSION"
