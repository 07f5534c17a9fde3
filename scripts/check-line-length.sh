#!/usr/bin/env bash
# No line over 120 characters in the project's own source, comments and strings included (Biome wraps code to 120
# but leaves comments and string literals alone). Prints each long line's place; exit 1 if there is one.
set -euo pipefail
cd "$(dirname "$0")/.."
LIMIT=120
# Characters, not bytes (a 'Δ' is one): grep counts them in a UTF-8 locale.
long=$(git ls-files -z -- '*.ts' '*.js' '*.mjs' '*.c' '*.h' '*.sh' '*.py' '*.proto' 'Makefile' '.ci/run' |
  LC_ALL=C.UTF-8 xargs -0 grep -nP "^.{$((LIMIT + 1)),}\$" | cut -d: -f1,2 || true)
if [ -n "$long" ]; then
  echo "$long"
  echo "$(echo "$long" | wc -l) lines over $LIMIT characters (reflow them)" >&2
  exit 1
fi
echo "line length: no line over $LIMIT characters"
