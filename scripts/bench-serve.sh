#!/usr/bin/env bash
# `protoshelf serve` against nginx serving the same JSON as static files,
# with wrk on loopback (issue 14), plus registration time against the CLI's
# push on the same store. Run as `scripts/bench.sh serve` (or directly).
# Writes its section of docs/benchmarks.md (between the serve-bench markers)
# and prints it. Nothing is asserted: this measures.
#
# Settings: BENCH_SERVE_DURATION=10s  BENCH_SERVE_CONNECTIONS=32
#           BENCH_SERVE_REGISTRATIONS=20  BENCH_OUT=docs/benchmarks.md
#           BENCH_SERVE_BIN=path   measure this protoshelf binary instead of
#                                  building the release one; BENCH_SERVE_BUILD names
#                                  it in the report (e.g. "debug build")
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DURATION="${BENCH_SERVE_DURATION:-10s}"
CONNS="${BENCH_SERVE_CONNECTIONS:-32}"
REGS="${BENCH_SERVE_REGISTRATIONS:-20}"
OUT="${BENCH_OUT:-docs/benchmarks.md}"
note() { echo "bench-serve.sh: $*" >&2; }

if ! command -v wrk >/dev/null || ! command -v nginx >/dev/null; then
  note "installing wrk and nginx-light (Debian)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends wrk nginx-light >&2
fi
if [[ -n "${BENCH_SERVE_BIN:-}" ]]; then
  BIN="$BENCH_SERVE_BIN"
  BUILD="${BENCH_SERVE_BUILD:-the binary given by BENCH_SERVE_BIN}"
else
  cargo build --release --locked --bin protoshelf >&2
  BIN="$PWD/target/release/protoshelf"
  BUILD="release build"
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/protoshelf-bench-serve.XXXXXX")"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ms() { date +%s%N; }

STORE="$WORK/store"
echo "tok ci writer" >"$WORK/tokens"
"$BIN" --store "$STORE" serve --listen 127.0.0.1:0 --tokens "$WORK/tokens" >"$WORK/serve.out" 2>"$WORK/serve.err" &
pids+=($!)
for _ in $(seq 100); do [[ -s "$WORK/serve.out" ]] && break; sleep 0.1; done
URL="$(sed -n 's/^listening on //p' "$WORK/serve.out")"
[[ -n "$URL" ]] || { cat "$WORK/serve.err" >&2; exit 1; }
note "protoshelf serve at $URL"

H=(-H 'Content-Type: application/vnd.schemaregistry.v1+json' -H 'Authorization: Bearer tok')
schema() { python3 -c 'import json,sys; print(json.dumps({"schema": "syntax = \"proto3\";\npackage bench;\nmessage Event {\n  string id = 1;\n  int64 at = 2;\n  string f%s = 3;\n}\n" % sys.argv[1], "schemaType": "PROTOBUF"}))' "$1"; }
ID="$(curl -sf "${H[@]}" -X POST "$URL/subjects/bench-value/versions" -d "$(schema 0)" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')"

# nginx serves byte-identical bodies from files.
WWW="$WORK/www"
mkdir -p "$WWW/schemas/ids" "$WWW/subjects/bench-value/versions"
curl -sf "$URL/schemas/ids/$ID" >"$WWW/schemas/ids/$ID"
curl -sf "$URL/subjects/bench-value/versions/latest" >"$WWW/subjects/bench-value/versions/latest"
NGINX_PORT="$(free_port)"
cat >"$WORK/nginx.conf" <<CONF
worker_processes auto;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err;
events { worker_connections 1024; }
http {
  access_log off;
  default_type application/vnd.schemaregistry.v1+json;
  client_body_temp_path $WORK; proxy_temp_path $WORK; fastcgi_temp_path $WORK; uwsgi_temp_path $WORK; scgi_temp_path $WORK;
  server { listen 127.0.0.1:$NGINX_PORT; root $WWW; }
}
CONF
nginx -c "$WORK/nginx.conf" -p "$WORK" &
pids+=($!)
sleep 0.5
cmp <(curl -sf "http://127.0.0.1:$NGINX_PORT/schemas/ids/$ID") <(curl -sf "$URL/schemas/ids/$ID")

# wrk: requests/s and p99 latency.
bench() { # URL -> "rps p99_ms"
  wrk -t2 -c"$CONNS" -d"$DURATION" --latency "$1" >"$WORK/wrk.txt"
  python3 - "$WORK/wrk.txt" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
m = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", t)
p99 = float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)]
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
if errors:
    sys.exit(f"wrk saw {errors.group(1)} error responses")
print(f"{rps:.0f} {p99:.2f}")
PY
}
rows=()
for path in "/schemas/ids/$ID" "/subjects/bench-value/versions/latest"; do
  read -r p_rps p_p99 < <(bench "$URL$path")
  read -r n_rps n_p99 < <(bench "http://127.0.0.1:$NGINX_PORT$path")
  ratio="$(python3 -c "print(f'{$p_rps/$n_rps:.2f}')")"
  note "$path: protoshelf $p_rps rps p99 $p_p99 ms; nginx $n_rps rps p99 $n_p99 ms; ratio $ratio"
  rows+=("| \`GET $path\` | $p_rps | $p_p99 | $n_rps | $n_p99 | ${ratio}× |")
done

# Registration (publish + promote through the server) against the CLI's
# push --promote (process start included), each of a new schema, same store.
# The request bodies are written first: only the request is timed (a
# python start per body inside the timed region cost 200-400 ms under load).
for i in $(seq 1 "$REGS"); do schema "r$i" >"$WORK/reg-$i.json"; done
reg_total=0
for i in $(seq 1 "$REGS"); do
  t0="$(ms)"
  curl -sf "${H[@]}" -X POST "$URL/subjects/bench-value/versions" -d "@$WORK/reg-$i.json" >/dev/null
  reg_total=$((reg_total + $(ms) - t0))
done
"$BIN" --store "$STORE" namespace create cli-bench --policy wire >/dev/null
cli_total=0
for i in $(seq 1 "$REGS"); do
  printf 'syntax = "proto3";\npackage clibench;\nmessage Event {\n  string id = 1;\n  string f%s = 2;\n}\n' "c$i" >"$WORK/event.proto"
  t0="$(ms)"
  "$BIN" --store "$STORE" push cli-bench event -I "$WORK" "$WORK/event.proto" --promote >/dev/null
  cli_total=$((cli_total + $(ms) - t0))
done
reg_ms="$(python3 -c "print(f'{$reg_total/$REGS/1e6:.1f}')")"
cli_ms="$(python3 -c "print(f'{$cli_total/$REGS/1e6:.1f}')")"
reg_ratio="$(python3 -c "print(f'{$reg_total/$cli_total:.2f}')")"
note "registration $reg_ms ms, CLI push --promote $cli_ms ms"

machine="$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
section="$WORK/section.md"
cat >"$section" <<MD
<!-- serve-bench:start (written by scripts/bench-serve.sh; scripts/bench.sh serve reruns it) -->
## \`protoshelf serve\` against nginx

\`scripts/bench.sh serve\`: \`wrk -t2 -c$CONNS -d$DURATION --latency\` on loopback, against
\`protoshelf serve\` ($BUILD, local-directory store, one schema registered)
and, in the same run, nginx $(nginx -v 2>&1 | sed 's/.*nginx\///') serving the byte-identical JSON bodies as
static files (\`worker_processes auto\`, access log off). Both and wrk share
the machine: $machine. Cached reads: the ID record is immutable and held in
memory; \`latest\` is served from the subject's state read within the last
\`--refresh\` (1 s), so about once a second one request re-reads the store.

| request | protoshelf req/s | protoshelf p99 ms | nginx req/s | nginx p99 ms | protoshelf / nginx |
|---|---|---|---|---|---|
$(printf '%s\n' "${rows[@]}")

Goal: at least 0.5× nginx's requests per second, p99 under 5 ms.

Registration of a new schema (\`POST /subjects/{s}/versions\`: compile, check
against the latest version, take an ID, publish and promote), mean of $REGS
registrations with curl: **$reg_ms ms**. The CLI's \`push --promote\` of a new
version on the same store, process start included, mean of $REGS: **$cli_ms ms**.
Ratio **$reg_ratio×** (goal: within 2×).
<!-- serve-bench:end -->
MD
python3 - "$OUT" "$section" <<'PY'
import re, sys
out, sec = sys.argv[1], open(sys.argv[2]).read()
try:
    doc = open(out).read()
except FileNotFoundError:
    doc = "# Benchmarks\n"
pat = re.compile(r"<!-- serve-bench:start.*?<!-- serve-bench:end -->\n?", re.S)
doc = pat.sub(lambda _: sec, doc) if pat.search(doc) else doc.rstrip("\n") + "\n\n" + sec
open(out, "w").write(doc)
PY
cat "$section"
note "wrote its section of $OUT"
