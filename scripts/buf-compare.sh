#!/usr/bin/env bash
# Installs the pinned buf CLI used by tests/integration/compat_buf.rs (if missing) and
# prints the path of its binary on stdout; progress goes to stderr.
#
#   PROTOSHELF_BUF="$(scripts/buf-compare.sh)" cargo test --test integration compat_buf::
#
# The test finds the binary in the same cache dir on its own, so running this
# once is enough.
set -euo pipefail

BUF_VERSION="1.75.0"
CACHE_DIR="${PROTOSHELF_CACHE:-$HOME/.cache/protoshelf}"
PREFIX="$CACHE_DIR/buf"
BIN="$PREFIX/node_modules/.bin/buf"

log() { echo "buf-compare.sh: $*" >&2; }

# Reinstall when the binary is absent or reports another version.
if [[ ! -x "$BIN" ]] || [[ "$("$BIN" --version 2>/dev/null)" != "$BUF_VERSION" ]]; then
  command -v npm >/dev/null || { log "error: npm is required"; exit 1; }
  log "installing @bufbuild/buf@$BUF_VERSION into $PREFIX"
  mkdir -p "$PREFIX"
  npm install --prefix "$PREFIX" --no-save --no-audit --no-fund \
    "@bufbuild/buf@$BUF_VERSION" >&2
fi

"$BIN" --version >/dev/null
echo "$BIN"
