#!/usr/bin/env bash
# protoshelf's benchmarks (issue 6), one command:
#
#   scripts/bench.sh
#
# Fetches the googleapis corpus (npm google-proto-files@5.0.3, every .proto
# outside google/protobuf/), builds protoshelf, and measures side by side in
# this one run, on the local-directory store and on LocalStack S3:
#   1. load of the whole corpus against protoc and buf compiling it, and the
#      load's requests by kind;
#   2. protoc --include_imports over every file through the mount against
#      local disk, warm and cold (fresh mount, page cache dropped);
#   3. ls -R and reading every file through the mount against local disk;
#   4. mount to first successful protoc, and the mount's peak RSS;
#   5. scale curves for 10 -> 10,000 schemas (benches/scale.rs);
#   6. idle mount requests.
# `scripts/bench.sh serve` runs only the server benchmark
# (scripts/bench-serve.sh: protoshelf serve against nginx with wrk); the full
# run ends with it too. `scripts/bench.sh mount-cold` runs only the cold
# compile through a fresh mount against local disk, on the local directory
# and LocalStack S3, and prints each ratio with its baseline and the
# compile's GETs; it writes no report.
# Prints the tables and writes them to docs/benchmarks.md with the machine
# and the commands. Nothing is asserted: tests check behaviour, this measures.
#
# Settings (all optional):
#   BENCH_RUNS=5            hyperfine runs per comparison
#   BENCH_SIZES=10,100,1000,10000   scale-curve namespace sizes
#   BENCH_S3=1              0 skips LocalStack (not allowed with CI=true)
#   BENCH_OUT=docs/benchmarks.md
#   AWS_ENDPOINT_URL        use this S3 instead of starting LocalStack
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
if [[ "${1:-}" == serve ]]; then
  exec bash scripts/bench-serve.sh
fi
MODE="${1:-all}"
[[ "$MODE" == all || "$MODE" == mount-cold ]] || { echo "bench.sh: unknown mode $MODE (all, serve, mount-cold)" >&2; exit 1; }

RUNS="${BENCH_RUNS:-5}"
SIZES="${BENCH_SIZES:-10,100,1000,10000}"
WANT_S3="${BENCH_S3:-1}"
OUT="${BENCH_OUT:-docs/benchmarks.md}"
CACHE_DIR="${PROTOSHELF_CACHE:-$HOME/.cache/protoshelf}"
CORPUS_VERSION="5.0.3"
CORPUS="$CACHE_DIR/google-proto-files-$CORPUS_VERSION"

note() { echo "bench.sh: $*" >&2; }
die() { note "error: $*"; exit 1; }
is_ci() { [[ "${CI:-}" == true ]]; }

run_start=$SECONDS
WORK="$(mktemp -d "${TMPDIR:-/tmp}/protoshelf-bench.XXXXXX")"
RESULTS="$WORK/results"
mkdir -p "$RESULTS"
mounts=()
pids=()
localstack_pid=""

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for m in "${mounts[@]}"; do fusermount3 -u "$m" 2>/dev/null || true; done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [[ -n "$localstack_pid" ]]; then bash scripts/localstack.sh stop "$localstack_pid" || true; fi
  rm -rf "$WORK"
  local t=$((SECONDS - run_start))
  note "finished with exit code $rc in $((t / 60))m$((t % 60))s"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- tools -----------------------------------------------------------------------
need_apt=()
command -v protoc >/dev/null || need_apt+=(protobuf-compiler)
command -v fusermount3 >/dev/null || need_apt+=(fuse3)
command -v hyperfine >/dev/null || need_apt+=(hyperfine)
[[ -x /usr/bin/time ]] || need_apt+=(time)
if ((${#need_apt[@]})); then
  note "installing ${need_apt[*]}"
  sudo=(); ((EUID == 0)) || sudo=(sudo)
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 -q update >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 -q install -y --no-install-recommends "${need_apt[@]}" >&2
fi
[[ -e /dev/fuse ]] || die "/dev/fuse is missing: the mount benchmarks need FUSE"
command -v npm >/dev/null || die "npm is required to fetch the corpus and buf"
BUF="$(bash scripts/buf-compare.sh)"
can_drop_caches=false
if ((EUID == 0)) && [[ -w /proc/sys/vm/drop_caches ]]; then can_drop_caches=true; fi

# --- corpus -----------------------------------------------------------------------
if [[ ! -f "$CORPUS/.complete" ]]; then
  note "fetching google-proto-files@$CORPUS_VERSION"
  rm -rf "$CORPUS" && mkdir -p "$CORPUS"
  (cd "$WORK" && npm pack --silent "google-proto-files@$CORPUS_VERSION" >/dev/null)
  tar -xzf "$WORK"/google-proto-files-*.tgz -C "$CORPUS" --strip-components=1 package
  touch "$CORPUS/.complete"
fi
SRC="$WORK/corpus"
mkdir -p "$SRC"
# Only the .proto files outside google/protobuf/ (editions and Ruby test files
# there do not compile with protoc 3.21; the well-known types come from the
# compiler, or from the mount).
(cd "$CORPUS" && find . -name '*.proto' -not -path './google/protobuf/*' -printf '%P\n' | LC_ALL=C sort) >"$WORK/files.txt"
(cd "$CORPUS" && tar -cf - -T "$WORK/files.txt" | tar -xf - -C "$SRC")
NFILES=$(wc -l <"$WORK/files.txt")
CORPUS_MB=$(du -sm "$SRC" | cut -f1)
note "corpus: $NFILES files, $CORPUS_MB MB"
ARGS="$WORK/files.args"
cp "$WORK/files.txt" "$ARGS"
cat >"$SRC/buf.yaml" <<'EOF'
version: v2
EOF

# --- build ------------------------------------------------------------------------
note "building (release)"
cargo build --release --locked >&2
PS="$ROOT/target/release/protoshelf"
if [[ "$MODE" == all ]]; then
cargo bench --bench scale --locked --no-run >&2
SCALE="$(cargo bench --bench scale --locked --no-run --message-format=json 2>/dev/null |
  python3 -c 'import sys,json
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m["target"]["name"]=="scale" and m.get("executable"): print(m["executable"])')"
[[ -x "$SCALE" ]] || die "benches/scale did not build"
fi

# --- S3 ---------------------------------------------------------------------------
s3=false
if [[ "$WANT_S3" == 1 ]]; then
  if [[ -z "${AWS_ENDPOINT_URL:-}" ]]; then
    bash scripts/localstack.sh install
    pidfile="$WORK/localstack.pid"
    if ls_env="$(PROTOSHELF_LOCALSTACK_PIDFILE="$pidfile" bash scripts/localstack.sh start)"; then
      eval "$ls_env"
      localstack_pid="$PROTOSHELF_LOCALSTACK_PID"
    else
      [[ -s "$pidfile" ]] && localstack_pid="$(cat "$pidfile")"
      is_ci && die "LocalStack could not start and CI=true"
      note "WARNING: LocalStack unavailable; S3 rows are skipped"
    fi
  fi
  if [[ -n "${AWS_ENDPOINT_URL:-}" ]]; then
    export AWS_REGION="${AWS_REGION:-us-east-1}"
    [[ "$AWS_ENDPOINT_URL" == http://* ]] && export AWS_ALLOW_HTTP="${AWS_ALLOW_HTTP:-true}"
    # A new bucket per store (LocalStack LISTs scan the whole bucket, so a
    # shared one would slow each experiment by the objects of the previous).
    BUCKET="psb-$(date +%s)"
    s3=true
  fi
elif is_ci; then
  die "BENCH_S3=0 is not allowed with CI=true"
fi

# --- helpers ----------------------------------------------------------------------
# hyperfine NAME [hyperfine args...]: JSON export in $RESULTS/NAME.json.
hf() {
  local name=$1; shift
  hyperfine --style basic --export-json "$RESULTS/$name.json" "$@" >&2
}

# mount STORE MNT: starts a mount of namespace g, waits until it serves.
start_mount() {
  local store=$1 mnt=$2
  mkdir -p "$mnt"
  "$PS" --store "$store" mount "$mnt" -n g >"$WORK/mount.log" 2>&1 &
  MOUNT_PID=$!
  pids+=("$MOUNT_PID")
  mounts+=("$mnt")
  for _ in $(seq 1 200); do
    [[ -d "$mnt/g/current" ]] && return 0
    sleep 0.05
  done
  cat "$WORK/mount.log" >&2
  die "mount of $store did not come up"
}
stop_mount() {
  fusermount3 -u "$1" 2>/dev/null || true
  wait "$MOUNT_PID" 2>/dev/null || true
}

PROTOC_ALL="protoc --include_imports -o /dev/null @$ARGS"

# init_store STORE: an initialized store with the empty namespace g.
init_store() {
  local create=()
  [[ "$1" == s3://* ]] && create=(--create-bucket)
  "$PS" --store "$1" init "${create[@]}" >/dev/null
  "$PS" --store "$1" namespace create g >/dev/null
}

# cold_protoc LABEL STORE MNT COPY: protoc over every file through a fresh
# mount (started inside the timed command) against the local copy, page
# cache dropped before each run; then one more cold run, counted (the
# mount's GETs and LISTs from its stats file, no refresh round during it).
cold_protoc() {
  local label=$1 store=$2 mnt=$3 copy=$4
  note "[$label] cold protoc (page cache dropped, fresh mount)"
  cat >"$WORK/cold-mount.sh" <<EOF
set -e
"$PS" --store "$store" mount "$mnt" -n g \${COLD_MOUNT_ARGS:-} >"$WORK/mount.log" 2>&1 &
echo \$! > "$WORK/cold-mount.pid"
until [ -d "$mnt/g/current" ]; do sleep 0.002; done
$PROTOC_ALL -I "$mnt/g/current"
EOF
  # hyperfine 1.15 has no --conclude: each run's prepare unmounts the
  # previous run's mount, then drops the page cache. The mount may be gone
  # already, which must not stop the script (set -e) when it runs it too.
  local drop="sync; echo 3 > /proc/sys/vm/drop_caches"
  local unmount="{ fusermount3 -u $mnt 2>/dev/null || true; }; while kill -0 \$(cat $WORK/cold-mount.pid 2>/dev/null) 2>/dev/null; do sleep 0.01; done"
  (cd "$WORK" && hf "protoc-cold-$label" --runs "$RUNS" \
    --command-name "mount" --prepare "$unmount; $drop" "bash $WORK/cold-mount.sh" \
    --command-name "local disk" --prepare "$unmount; $drop" "$PROTOC_ALL -I $copy")
  eval "$unmount"
  eval "$drop"
  (cd "$WORK" && COLD_MOUNT_ARGS="--refresh 60m" bash "$WORK/cold-mount.sh" >/dev/null)
  awk '$1=="requests_get"||$1=="requests_list"{printf "%s ", $2}' "$mnt/.protoshelf/stats" >"$RESULTS/cold-requests-$label.txt"
  eval "$unmount"
  python3 - "$RESULTS/protoc-cold-$label.json" "$RESULTS/cold-requests-$label.txt" "$NFILES" "$label" <<'PY' >&2
import json, sys
r = {x["command"]: x["median"] for x in json.load(open(sys.argv[1]))["results"]}
get, lst = open(sys.argv[2]).read().split()
n = int(sys.argv[3])
print(f"bench.sh: [{sys.argv[4]}] cold protoc, mount start included: mount {r['mount']:.3f} s, "
      f"local disk {r['local disk']:.3f} s (medians, same hyperfine run): "
      f"ratio {r['mount'] / r['local disk']:.2f}x; one counted cold compile: "
      f"{get} GETs + {lst} LISTs for {n} files (1 GET per {n / max(int(get), 1):.0f} files)")
PY
}

# mount_cold_only LABEL BASE: the mount-cold mode on one backend: a store
# with the corpus loaded, a local copy of its tree, then cold_protoc.
mount_cold_only() {
  local label=$1 base=$2 store
  if [[ "$label" == local ]]; then store="$WORK/store-local"; rm -rf "$store"; else store="$base-cold-$(date +%s%N)"; fi
  init_store "$store"
  note "[$label] loading the corpus"
  (cd "$SRC" && "$PS" --store "$store" load g . --promote >/dev/null 2>&1)
  local mnt="$WORK/mnt-$label" copy="$WORK/copy-$label"
  start_mount "$store" "$mnt"
  rm -rf "$copy" && cp -r "$mnt/g/current" "$copy"
  stop_mount "$mnt"
  cold_protoc "$label" "$store" "$mnt" "$copy"
}

if [[ "$MODE" == mount-cold ]]; then
  [[ "$can_drop_caches" == true ]] || die "mount-cold needs root (it drops the page cache)"
  mount_cold_only local ""
  if [[ "$s3" == true ]]; then mount_cold_only s3 "s3://$BUCKET"; fi
  exit 0
fi

# --- 1. load ----------------------------------------------------------------------
backend_rows=()
bench_backend() {
  local label=$1 base=$2
  note "[$label] load vs protoc vs buf"
  local cur="$WORK/current-store"
  local prep
  if [[ "$label" == local ]]; then
    prep="rm -rf $WORK/load-store && $PS --store $WORK/load-store init >/dev/null && $PS --store $WORK/load-store namespace create g >/dev/null"
    echo "$WORK/load-store" >"$cur"
  else
    prep="echo $base-load-\$(date +%s%N) > $cur && $PS --store \$(cat $cur) init --create-bucket >/dev/null && $PS --store \$(cat $cur) namespace create g >/dev/null"
  fi
  (cd "$SRC" && hf "load-$label" --runs "$RUNS" \
    --command-name "protoshelf load" --prepare "$prep" "$PS --store \$(cat $cur) load g . --promote" \
    --command-name "protoc" --prepare "true" "$PROTOC_ALL -I ." \
    --command-name "buf build" --prepare "true" "$BUF build . -o /dev/null --exclude-source-info")
  # One more load, counted.
  local store
  if [[ "$label" == local ]]; then store="$WORK/store-local"; rm -rf "$store"; else store="$base-main-$(date +%s%N)"; fi
  init_store "$store"
  (cd "$SRC" && /usr/bin/env time -f '%M' -o "$RESULTS/load-rss-$label.txt" \
    "$PS" --store "$store" --stats load g . --promote >/dev/null 2>"$RESULTS/load-stats-$label.txt")
  echo "$store" >"$RESULTS/store-$label.txt"
  # Peak memory against the input (README: within --max-memory, the
  # estimate documented there).
  local rss_kb input_bytes
  rss_kb=$(tail -1 "$RESULTS/load-rss-$label.txt")
  input_bytes=$(cd "$SRC" && cat -- $(cat "$WORK/files.txt") | wc -c)
  note "[$label] memory: googleapis load ($NFILES files, $input_bytes bytes) peak RSS $((rss_kb / 1024)) MiB, $(awk -v r="$rss_kb" -v b="$input_bytes" 'BEGIN{printf "%.1f", r*1024/b}')x the input"
  if [[ "$label" == local ]]; then
    # A dense file: one message of 330,000 one-line fields (7.4 MB).
    local dense="$WORK/dense" dstore="$WORK/store-dense"
    mkdir -p "$dense/wide"
    awk 'BEGIN{print "syntax = \"proto3\";\npackage wide;\nmessage Wide {"; for(i=0;i<330000;i++){n=i+1; if(n>=19000)n+=1000; printf "bool f%d = %d;\n", i, n} print "}"}' >"$dense/wide/wide.proto"
    rm -rf "$dstore" && init_store "$dstore"
    /usr/bin/env time -f '%M' -o "$RESULTS/dense-rss.txt" "$PS" --store "$dstore" push g wide "$dense" >/dev/null
    rss_kb=$(tail -1 "$RESULTS/dense-rss.txt")
    input_bytes=$(wc -c <"$dense/wide/wide.proto")
    note "[$label] memory: one 330,000-field file ($input_bytes bytes) peak RSS $((rss_kb / 1024)) MiB, $(awk -v r="$rss_kb" -v b="$input_bytes" 'BEGIN{printf "%.1f", r*1024/b}')x the input"
    # Three of them, one schema each, in one load (the estimate counts
    # them as one batch and is over the default cap: no cap here).
    local three="$WORK/three"
    for k in 1 2 3; do
      mkdir -p "$three/w$k"
      sed "s/^package wide;/package wide$k;/" "$dense/wide/wide.proto" >"$three/w$k/wide.proto"
    done
    rm -rf "$dstore" && init_store "$dstore"
    /usr/bin/env time -f '%M' -o "$RESULTS/three-rss.txt" "$PS" --store "$dstore" load g "$three" --max-memory 0 -q >/dev/null
    rss_kb=$(tail -1 "$RESULTS/three-rss.txt")
    input_bytes=$(cat "$three"/w*/wide.proto | wc -c)
    note "[$label] memory: three 330,000-field files ($input_bytes bytes, one load) peak RSS $((rss_kb / 1024)) MiB, $(awk -v r="$rss_kb" -v b="$input_bytes" 'BEGIN{printf "%.1f", r*1024/b}')x the input"
  fi

  note "[$label] mount: protoc, ls -R, cat, warm"
  local mnt="$WORK/mnt-$label" copy="$WORK/copy-$label"
  start_mount "$store" "$mnt"
  rm -rf "$copy" && cp -r "$mnt/g/current" "$copy"
  # The mount and its local copy must give the same compiled output.
  (cd "$WORK" && protoc --include_imports -o "$WORK/a.pb" -I "$mnt/g/current" @"$ARGS" &&
    protoc --include_imports -o "$WORK/b.pb" -I "$copy" @"$ARGS" && cmp -s a.pb b.pb) ||
    die "[$label] protoc through the mount differs from protoc on a local copy"
  hf "protoc-warm-$label" --warmup 1 --runs "$RUNS" \
    --command-name "mount" "$PROTOC_ALL -I $mnt/g/current" \
    --command-name "local disk" "$PROTOC_ALL -I $copy"
  hf "ls-$label" --warmup 2 --runs $((RUNS * 4)) -N \
    --command-name "mount" "ls -R $mnt/g/current" \
    --command-name "local disk" "ls -R $copy"
  hf "cat-$label" --warmup 2 --runs $((RUNS * 2)) \
    --command-name "mount" "find $mnt/g/current -type f -exec cat {} + >/dev/null" \
    --command-name "local disk" "find $copy -type f -exec cat {} + >/dev/null"
  grep -E '^VmHWM' "/proc/$MOUNT_PID/status" | awk '{print $2}' >"$RESULTS/mount-rss-$label.txt"
  # Idle: requests and refresh rounds over 30 s of a mount nobody uses (a
  # window can cut one round between its count and its GET: ±1).
  local s0 s1
  s0=$(awk '$1=="requests_total"||$1=="refreshes"{printf "%s ", $2}' "$mnt/.protoshelf/stats")
  sleep 30
  s1=$(awk '$1=="requests_total"||$1=="refreshes"{printf "%s ", $2}' "$mnt/.protoshelf/stats")
  echo "$s0 $s1" | awk '{print $4 - $2, $3 - $1}' >"$RESULTS/idle-$label.txt"
  stop_mount "$mnt"

  # Time from starting the mount to the first protoc of one file that works.
  local first=() t0 t1
  for _ in $(seq 1 "$RUNS"); do
    t0=$(date +%s%N)
    "$PS" --store "$store" mount "$mnt" -n g >"$WORK/mount.log" 2>&1 &
    MOUNT_PID=$!
    pids+=("$MOUNT_PID")
    until protoc -I "$mnt/g/current" -o /dev/null google/pubsub/v1/pubsub.proto 2>/dev/null; do sleep 0.005; done
    t1=$(date +%s%N)
    first+=($(((t1 - t0) / 1000000)))
    stop_mount "$mnt"
  done
  printf '%s\n' "${first[@]}" | sort -n | sed -n "$(((${#first[@]} + 1) / 2))p" >"$RESULTS/first-protoc-$label.txt"

  if [[ "$can_drop_caches" == true ]]; then cold_protoc "$label" "$store" "$mnt" "$copy"; fi
  backend_rows+=("$label")
}

bench_backend local ""
if [[ "$s3" == true ]]; then bench_backend s3 "s3://$BUCKET"; fi

# --- 5, 6. scale curves and idle mounts --------------------------------------------
note "scale curves on the local store ($SIZES)"
"$SCALE" --bench --store "$WORK/scale" --sizes "$SIZES" --idle 1,100 --json "$RESULTS/scale-local.json" >"$RESULTS/scale-local.md"
if [[ "$s3" == true ]]; then
  note "scale curves on S3 ($SIZES)"
  "$SCALE" --bench --store "s3://$BUCKET" --sizes "$SIZES" --idle 1,100 --json "$RESULTS/scale-s3.json" >"$RESULTS/scale-s3.md"
fi

# --- report -----------------------------------------------------------------------
machine="$(nproc) cores, $(awk -F: '/model name/{print $2; exit}' /proc/cpuinfo | sed 's/^ *//'), $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), Linux $(uname -r)"
versions="protoshelf $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(rustc --version | cut -d' ' -f1-2), $(protoc --version), buf $("$BUF" --version), $(hyperfine --version)"
[[ "$s3" == true ]] && versions+=", S3: ${AWS_ENDPOINT_URL%%:*} endpoint (LocalStack 4.5 when started by this script)"
python3 scripts/bench_report.py "$RESULTS" "$NFILES" "$CORPUS_MB" "$machine" "$versions" "$RUNS" "$SIZES" "$can_drop_caches" "$s3" >"$WORK/report.md"
cp "$WORK/report.md" "$OUT"
cat "$WORK/report.md"
note "wrote $OUT"
# The server benchmark adds its section to the report just written.
BENCH_OUT="$OUT" bash scripts/bench-serve.sh
