#!/usr/bin/env bash
# Native (no Docker) LocalStack S3 for protoshelf's integration tests.
#
#   scripts/localstack.sh install         # create/refresh the Python venv
#   eval "$(scripts/localstack.sh start)" # start S3, export AWS_* variables
#   scripts/localstack.sh stop PID        # stop it ($PROTOSHELF_LOCALSTACK_PID)
#
# `start` prints only `export` lines on stdout; progress goes to stderr.
# Settings (all optional):
#   PROTOSHELF_CACHE               where the venv lives (~/.cache/protoshelf)
#   PROTOSHELF_LOCALSTACK_TIMEOUT  seconds `start` waits for S3 (60)
#   PROTOSHELF_LOCALSTACK_PIDFILE  `start` writes the server pid here at once,
#                                  so a caller interrupted mid-start can stop it
#   PROTOSHELF_LOCALSTACK_KEEP=1   `stop` keeps the temp dir (log) for debugging
set -euo pipefail

CACHE_DIR="${PROTOSHELF_CACHE:-$HOME/.cache/protoshelf}"
VENV="$CACHE_DIR/localstack-venv"
PY="$VENV/bin/python"
STAMP="$VENV/.protoshelf-pins"
READY_TIMEOUT="${PROTOSHELF_LOCALSTACK_TIMEOUT:-60}"

# A known-good set: localstack-core 4.5.0 plus upper bounds that stop pip from
# choosing newer releases of its dependencies that it does not work with.
# boto3 is what `start` uses to probe readiness (and handy for ad-hoc checks).
PINS=(
  'localstack-core[runtime]==4.5.0'
  'cbor2<5.7'
  'pyopenssl<24.3'
  'cryptography>=42,<44'
  'service_identity<24.2'
  'boto3'
)

log() { echo "localstack.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

cmd_install() {
  local want
  want="$(printf '%s\n' "${PINS[@]}")"
  # Fast path: the venv exists and was built from exactly these pins.
  if [[ -x "$PY" && -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
    log "venv up to date: $VENV"
    return 0
  fi
  mkdir -p "$CACHE_DIR"
  if [[ ! -x "$PY" ]]; then
    log "creating venv $VENV"
    python3 -m venv "$VENV"
  fi
  log "installing LocalStack into $VENV (about half a minute the first time)"
  "$PY" -m pip install --quiet --upgrade pip >&2
  "$PY" -m pip install --quiet "${PINS[@]}" >&2
  # Fail now, not at `start`, if the install is unusable.
  "$PY" -c 'import localstack.runtime.main, boto3' >&2
  printf '%s\n' "$want" >"$STAMP"
  log "installed"
}

# LocalStack's twisted gateway ignores the host part of GATEWAY_LISTEN for IPv4
# (a "TODO: interface = host?" in its source) and listens on 0.0.0.0. Its S3
# accepts any credentials, so pin the listener to loopback, then run the usual
# entry point (`python -m localstack.runtime.main`).
LOOPBACK_MAIN='
import functools, runpy
from twisted.internet import endpoints
endpoints.TCP4ServerEndpoint = functools.partial(
    endpoints.TCP4ServerEndpoint, interface="127.0.0.1")
runpy.run_module("localstack.runtime.main", run_name="__main__", alter_sys=True)
'

free_port() {
  "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Waits until LocalStack answers a *signed* S3 call. An unsigned `GET /`
# already answers while the S3 provider is still loading, so it proves nothing.
# One Python process polls (importing boto3 per attempt would cost ~0.5 s).
# Exit status: 0 ready, 1 timed out, 2 the server process died.
wait_s3() { # ENDPOINT PID TIMEOUT
  env -u AWS_PROFILE -u AWS_SESSION_TOKEN \
    AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
    "$PY" - "$@" <<'EOF'
import os, sys, time
import boto3
from botocore.config import Config

endpoint, pid, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s3 = boto3.client(
    "s3",
    endpoint_url=endpoint,
    region_name="us-east-1",
    config=Config(
        s3={"addressing_style": "path"},
        connect_timeout=2,
        read_timeout=5,
        retries={"max_attempts": 1},
    ),
)
deadline = time.monotonic() + timeout
try:
    while True:
        try:
            s3.list_buckets()
            sys.exit(0)
        except Exception as e:
            last = e
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            sys.exit(2)
        if time.monotonic() >= deadline:
            print(f"last probe error: {last}", file=sys.stderr)
            sys.exit(1)
        time.sleep(0.25)
except KeyboardInterrupt:
    sys.exit(130)  # the shell's INT trap stops the server
EOF
}

# Set by cmd_start; global so the interrupt trap can see them.
START_PID=""
START_DIR=""

cmd_start() {
  [[ -x "$PY" ]] || die "LocalStack is not installed; run: $0 install"
  local port logfile endpoint rc=0
  port="$(free_port)"
  endpoint="http://127.0.0.1:$port"
  # Everything LocalStack writes (state, tmp files, generated TLS cert, service
  # catalog cache, log) goes into a fresh temp dir, never into the repository.
  START_DIR="$(mktemp -d "${TMPDIR:-/tmp}/protoshelf-localstack.XXXXXX")"
  mkdir -p "$START_DIR/fs" "$START_DIR/volume" "$START_DIR/tmp"
  logfile="$START_DIR/localstack.log"

  # Environment, and why:
  #   GATEWAY_LISTEN         the free port picked above
  #   LOCALSTACK_HOST        host:port LocalStack puts in URLs it returns
  #   SERVICES=s3            nothing else is needed; starts faster
  #   GATEWAY_SERVER=twisted LocalStack's default; the hypercorn alternative
  #                          would honour the bind address, but it drops the
  #                          connection on a conditional PutObject (If-None-Match)
  #   OVERRIDE_IN_DOCKER=0   we may run inside a container (/.dockerenv); without
  #                          this LocalStack assumes it is its own image and
  #                          writes to /var/lib/localstack and /tmp/localstack
  #   FILESYSTEM_ROOT        host-mode root for all its dirs (default: a dir in
  #                          the venv's site-packages, shared by every run)
  #   LOCALSTACK_VOLUME_DIR  likewise for its "volume" dir
  #   TMPDIR                 Python's tempfile dir, for anything else (logs a
  #                          harmless "TMPDIR is deprecated" warning)
  #   PERSISTENCE=0          state in memory only; every run starts empty
  #   EAGER_SERVICE_LOADING  load S3 at startup rather than on first request
  #   DISABLE_EVENTS=1       no analytics/telemetry sent to localstack.cloud
  #   SKIP_SSL_CERT_DOWNLOAD=1  no network fetch of its TLS cert at startup
  #   DNS_ADDRESS=0          no DNS server (as root it would bind port 53)
  # setsid: the server leads its own process group and session, so a Ctrl-C in
  # the caller's terminal does not reach it and `stop` can kill the whole group.
  # cd: nothing relative lands in the caller's working directory.
  (
    cd "$START_DIR"
    exec env \
      GATEWAY_LISTEN="127.0.0.1:$port" \
      LOCALSTACK_HOST="127.0.0.1:$port" \
      SERVICES=s3 \
      GATEWAY_SERVER=twisted \
      OVERRIDE_IN_DOCKER=0 \
      FILESYSTEM_ROOT="$START_DIR/fs" \
      LOCALSTACK_VOLUME_DIR="$START_DIR/volume" \
      TMPDIR="$START_DIR/tmp" \
      PERSISTENCE=0 \
      EAGER_SERVICE_LOADING=1 \
      DISABLE_EVENTS=1 \
      SKIP_SSL_CERT_DOWNLOAD=1 \
      DNS_ADDRESS=0 \
      setsid "$PY" -c "$LOOPBACK_MAIN"
  ) </dev/null >"$logfile" 2>&1 &
  START_PID=$!
  if [[ -n "${PROTOSHELF_LOCALSTACK_PIDFILE:-}" ]]; then
    echo "$START_PID" >"$PROTOSHELF_LOCALSTACK_PIDFILE"
  fi
  # Interrupted before the caller learns the pid: stop the server ourselves.
  # (Short grace: while still booting, LocalStack does not act on SIGTERM.)
  trap 'cmd_stop "$START_PID" 2; exit 130' INT
  trap 'cmd_stop "$START_PID" 2; exit 143' TERM
  log "started pid $START_PID on $endpoint (log: $logfile)"

  wait_s3 "$endpoint" "$START_PID" "$READY_TIMEOUT" || rc=$?
  if ((rc != 0)); then
    if ((rc == 2)); then
      log "LocalStack exited early; last log lines:"
    else
      log "S3 not ready after ${READY_TIMEOUT}s; last log lines:"
    fi
    tail -n 40 "$logfile" >&2 || true
    cmd_stop "$START_PID" 2
    exit 1
  fi
  trap - INT TERM
  log "S3 ready"

  # %q: the output is meant for `eval`.
  printf 'export %s=%q\n' \
    AWS_ENDPOINT_URL "$endpoint" \
    AWS_REGION us-east-1 \
    AWS_ACCESS_KEY_ID test \
    AWS_SECRET_ACCESS_KEY test \
    AWS_ALLOW_HTTP true \
    PROTOSHELF_LOCALSTACK_PID "$START_PID" \
    PROTOSHELF_LOCALSTACK_LOG "$logfile"
}

alive() { kill -0 -- "-$1" 2>/dev/null || kill -0 "$1" 2>/dev/null; }

# stop PID [GRACE]: SIGTERM, up to GRACE seconds (default 15; a clean shutdown
# takes ~4-5 s) for the process group to exit, then SIGKILL.
cmd_stop() {
  local pid="${1:-${PROTOSHELF_LOCALSTACK_PID:-}}" grace="${2:-15}" dir="" i
  [[ "$pid" =~ ^[0-9]+$ && "$grace" =~ ^[0-9]+$ ]] || die "usage: $0 stop PID [GRACE_SECONDS]"
  # Guard against a stale or mistyped pid: only ever signal LocalStack.
  if [[ -r "/proc/$pid/cmdline" ]] && ! tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q localstack; then
    die "pid $pid is not a LocalStack process; not stopping it"
  fi
  # `start` ran the server with its temp dir as working directory.
  dir="$(readlink "/proc/$pid/cwd" 2>/dev/null || true)"
  [[ -n "$dir" ]] || dir="${START_DIR:-}"
  if alive "$pid"; then
    # `start` made the pid a process-group leader (setsid): signal the group,
    # which also reaches anything LocalStack forked.
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 10; i++)); do
      alive "$pid" || break
      sleep 0.1
    done
    if alive "$pid"; then
      log "pid $pid ignored SIGTERM; sending SIGKILL"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || true # reap it if it is our child
  if [[ -n "$dir" && -d "$dir" && "$(basename "$dir")" == protoshelf-localstack.* ]]; then
    if [[ "${PROTOSHELF_LOCALSTACK_KEEP:-}" == 1 ]]; then
      log "kept $dir"
    else
      rm -rf "$dir"
    fi
  fi
}

case "${1:-}" in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) shift; cmd_stop "$@" ;;
  *)
    echo "usage: $0 {install|start|stop PID [GRACE_SECONDS]}" >&2
    exit 2
    ;;
esac
