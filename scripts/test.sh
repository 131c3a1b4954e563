#!/usr/bin/env bash
# protoshelf's full test run: system packages, a throwaway LocalStack S3, then
# `cargo test`. Extra arguments go to both cargo invocations, e.g.
#   scripts/test.sh -- --nocapture
#
# To test against an S3 you already run, set AWS_ENDPOINT_URL (and the AWS_*
# credentials it needs); LocalStack is then neither installed nor started.
# With CI=true, failing to start LocalStack is an error instead of a skip.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

run_start=$SECONDS
localstack_pid=""
# localstack.sh writes the server pid here as soon as it spawns it, so cleanup
# can stop a server whose start was interrupted.
pidfile="$(mktemp "${TMPDIR:-/tmp}/protoshelf-localstack-pid.XXXXXX")"

note() { echo "test.sh: $*" >&2; }

# Runs on every exit path (success, failure, Ctrl-C, kill): never leave a
# LocalStack process behind, and always say how long the run took.
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -z "$localstack_pid" && -s "$pidfile" ]]; then
    localstack_pid="$(cat "$pidfile")"
  fi
  rm -f "$pidfile"
  if [[ -n "$localstack_pid" ]]; then
    note "stopping LocalStack (pid $localstack_pid)"
    bash scripts/localstack.sh stop "$localstack_pid" || true
  fi
  local t=$((SECONDS - run_start))
  note "finished with exit code $rc in $((t / 60))m$((t % 60))s"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT  # `exit` runs the EXIT trap, i.e. cleanup
trap 'exit 143' TERM

is_ci() { [[ "${CI:-}" == true ]]; }

# --- system packages ----------------------------------------------------------
# Another apt/dpkg run may hold the lock (e.g. provisioning in the background):
# wait for it instead of failing. DPkg::Lock::Timeout covers the dpkg lock; the
# retry loop also covers the lists lock taken by `apt-get update`.
apt_get() {
  local sudo=() attempt log
  if ((EUID != 0)); then sudo=(sudo); fi
  log="$(mktemp)"
  for attempt in $(seq 1 30); do
    if "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
      apt-get -o DPkg::Lock::Timeout=300 -q "$@" 2>&1 | tee "$log" >&2; then
      rm -f "$log"
      return 0
    fi
    if grep -qiE 'could not get lock|unable to acquire|is another process using it' "$log"; then
      note "apt/dpkg lock busy, retrying in 10s (attempt $attempt/30)"
      sleep 10
      continue
    fi
    break
  done
  rm -f "$log"
  return 1
}

if ! command -v protoc >/dev/null || ! command -v fusermount3 >/dev/null ||
  ! command -v openssl >/dev/null || ! command -v curl >/dev/null; then
  command -v apt-get >/dev/null ||
    { note "protoc, fusermount3, openssl and curl are required; install protobuf-compiler, fuse3, openssl and curl"; exit 1; }
  note "installing fuse3, protobuf-compiler, openssl and curl"
  apt_get update
  apt_get install -y --no-install-recommends fuse3 protobuf-compiler openssl curl
fi
command -v cargo >/dev/null || { note "cargo not found (install Rust via rustup)"; exit 1; }

# --- S3 -------------------------------------------------------------------------
s3_ready=false
if [[ -n "${AWS_ENDPOINT_URL:-}" ]]; then
  note "using the S3 endpoint from AWS_ENDPOINT_URL: $AWS_ENDPOINT_URL"
  export AWS_REGION="${AWS_REGION:-us-east-1}"
  if [[ "$AWS_ENDPOINT_URL" == http://* ]]; then export AWS_ALLOW_HTTP="${AWS_ALLOW_HTTP:-true}"; fi
  s3_ready=true
else
  ls_start=$SECONDS
  if bash scripts/localstack.sh install &&
    ls_env="$(PROTOSHELF_LOCALSTACK_PIDFILE="$pidfile" bash scripts/localstack.sh start)"; then
    eval "$ls_env" # exports AWS_ENDPOINT_URL, AWS_REGION, credentials, ...
    localstack_pid="$PROTOSHELF_LOCALSTACK_PID"
    note "LocalStack S3 ready at $AWS_ENDPOINT_URL after $((SECONDS - ls_start))s"
    s3_ready=true
  else
    : >"$pidfile" # a failed start has already stopped its server
    if is_ci; then
      note "ERROR: LocalStack could not be installed or started, and CI=true:"
      note "S3 integration tests must not be skipped in CI. See the messages above."
      exit 1
    fi
    note "WARNING: LocalStack unavailable; S3 integration tests will be SKIPPED"
  fi
fi

if [[ "$s3_ready" == true ]]; then
  export PROTOSHELF_TEST_S3=1
fi

# --- buf (the compatibility checker is compared with it) ------------------------
if buf_bin="$(bash scripts/buf-compare.sh)"; then
  export PROTOSHELF_BUF="$buf_bin"
elif is_ci; then
  note "ERROR: buf could not be installed, and CI=true: the buf comparison must not be skipped"
  exit 1
else
  note "WARNING: buf unavailable; the buf comparison test will be SKIPPED"
fi

# --- the Schema Registry clients (tests/integration/serve.rs drives them) ------------------
if clients_env="$(bash scripts/clients.sh install)"; then
  eval "$clients_env" # PROTOSHELF_CLIENTS_PY, PROTOSHELF_CLIENTS_NODE_PATH
elif is_ci; then
  note "ERROR: the Schema Registry clients could not be installed, and CI=true: their tests must not be skipped"
  exit 1
else
  note "WARNING: Schema Registry clients unavailable; their tests will be SKIPPED"
fi

# --- tests ----------------------------------------------------------------------
# A fresh CI clone gains nothing from incremental caches, and they cost about
# 1 GB of a disk that has run out before.
if is_ci; then export CARGO_INCREMENTAL=0; fi
note "disk before the build: $(df -h . | awk 'NR==2 {print $4 " free of " $2}')"
# --all-targets does not include doctests, hence the second run.
note "cargo test --all-targets --locked $*"
cargo test --all-targets --locked "$@"
note "cargo test --doc --locked $*"
cargo test --doc --locked "$@"
note "disk after the tests: $(df -h . | awk 'NR==2 {print $4 " free of " $2}')"


# --- fuzz smoke run (opt-in) ------------------------------------------------------
# The fuzz targets' bodies already ran above over every seed and saved
# finding (`fuzz_regressions`, in the normal test build). Actually fuzzing
# needs its own instrumented release build of every dependency (10-16 min
# cold on 2 cores), which would push a CI run past its 30-minute budget, so
# it is opt-in: PROTOSHELF_FUZZ_SMOKE_SECONDS=10 runs each target that long.
# Long runs are `scripts/fuzz.sh --cpu 1200` (README, "Fuzzing").
smoke="${PROTOSHELF_FUZZ_SMOKE_SECONDS:-0}"
if ((smoke > 0)); then
  fuzz_start=$SECONDS
  note "fuzz smoke run: ${smoke}s per target"
  bash scripts/fuzz.sh "$smoke"
  note "fuzz smoke run took $((SECONDS - fuzz_start))s"
fi
