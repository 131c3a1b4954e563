#!/usr/bin/env bash
# The main job on the embedded local-directory store: build, load an example
# namespace with cross-schema imports and a builtin, promote, inspect, try an
# incompatible change, roll back. Nothing to install or start beyond Rust.
#
# The demo uses a fresh store in a temporary directory (PROTOSHELF_STORE), so
# it never touches your own embedded store; set DEMO_KEEP=1 to keep it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
run() { say "protoshelf $*"; "$bin" "$@"; }

echo "building protoshelf (release)..."
cargo build --release --quiet
bin="$PWD/target/release/protoshelf"

work="$(mktemp -d "${TMPDIR:-/tmp}/protoshelf-demo.XXXXXX")"
cleanup() {
  if [[ "${DEMO_KEEP:-}" == 1 ]]; then echo "store kept at $work/store"; else rm -rf "$work"; fi
}
trap cleanup EXIT
export PROTOSHELF_STORE="$work/store"

run init
run namespace create shop --policy strict --metadata team=checkout
# Builtins: files every namespace can import.
run load __builtins__ examples/builtins --promote
# One schema per directory, staged in one commit, then promoted.
run load shop examples/shop --promote
run schema list shop
run schema info shop shop.orders

# A compatible change: a new field and enum value.
run push shop shop.orders examples/changes/compatible --created-by demo
run promote shop

# An incompatible change: a field removed, a type changed. It stages, but
# the promote is refused with the rule IDs, and current stays as it was.
run push shop shop.orders examples/changes/incompatible --created-by demo
if run promote shop; then
  echo "demo: the incompatible promote should have been refused" >&2
  exit 1
fi
run schema info shop shop.orders

# Roll back: stage version 1 (forced past the check) and promote it.
run discard shop
run rollback shop shop.orders 1 --force --promote
run schema source shop shop.orders
run log shop

# The registry as plain files: mount it read-only and compile with protoc,
# no client needed. (Needs /dev/fuse and fusermount3; skipped without them.)
if [[ -e /dev/fuse ]] && command -v fusermount3 >/dev/null && command -v protoc >/dev/null; then
  mnt="$work/mnt"
  mkdir -p "$mnt"
  say "protoshelf mount $mnt &"
  "$bin" mount "$mnt" &
  mount_pid=$!
  for _ in $(seq 100); do [[ -e "$mnt/.protoshelf/stats" ]] && break; sleep 0.1; done
  say "ls $mnt/shop/current/shop/orders"
  ls "$mnt/shop/current/shop/orders"
  say "protoc -I $mnt/shop/current --include_imports -o $work/shop.binpb shop/orders/order.proto shop/catalog/item.proto"
  protoc -I "$mnt/shop/current" --include_imports -o "$work/shop.binpb" shop/orders/order.proto shop/catalog/item.proto
  echo "compiled $(wc -c <"$work/shop.binpb") bytes of descriptors through the mount"
  say "readlink $mnt/shop/schemas/shop.orders/current"
  readlink "$mnt/shop/schemas/shop.orders/current"
  say "fusermount3 -u $mnt"
  fusermount3 -u "$mnt"
  wait "$mount_pid"
else
  echo "(skipping the mount step: needs /dev/fuse, fusermount3 and protoc; scripts/test.sh installs them)"
fi
echo
echo "demo finished: store at $PROTOSHELF_STORE (removed on exit)"
