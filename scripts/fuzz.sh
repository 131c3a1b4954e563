#!/usr/bin/env bash
# Runs the cargo-fuzz targets (fuzz/): builds them, then runs each for
# SECONDS (default 60) in one libFuzzer process at a time, and reports the
# CPU time it used, its executions, its corpus and whether it failed.
#   scripts/fuzz.sh [--cpu] [SECONDS] [TARGET...]   targets: compile records descriptors mount_paths
# With --cpu, SECONDS is CPU time per target rather than wall time: on a busy
# machine a target is run again (resuming from its corpus) until it has had
# that much CPU, so "20 CPU-minutes" means the same on any machine.
# Exit 0 when no target failed, 1 when one found a crash, timeout or OOM
# (its input is in fuzz/artifacts/<target>/: fix the cause, then copy the
# input to fuzz/regressions/<target>/ so `cargo test` keeps checking it).
#
# cargo-fuzz needs nightly-only rustc flags (-Zsanitizer, sancov passes);
# RUSTC_BOOTSTRAP=1 lets the one stable toolchain accept them. With CI=true
# a cargo-fuzz that cannot be installed is an error, otherwise a skip.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cpu_mode=false
if [[ "${1:-}" == --cpu ]]; then
  cpu_mode=true
  shift
fi
seconds="${1:-60}"
shift || true
targets=("$@")
((${#targets[@]})) || targets=(compile records descriptors mount_paths)
note() { echo "fuzz.sh: $*" >&2; }

if ! cargo fuzz --version >/dev/null 2>&1; then
  note "installing cargo-fuzz"
  if ! cargo install cargo-fuzz --locked; then
    if [[ "${CI:-}" == true ]]; then
      note "cannot install cargo-fuzz (CI=true: failing)"
      exit 1
    fi
    note "cannot install cargo-fuzz: skipping the fuzzers"
    exit 0
  fi
fi

export RUSTC_BOOTSTRAP=1
# No sanitizer: protoshelf and the parsers it fuzzes are safe Rust, where
# ASan finds nothing a panic would not, at 2-3x the cost per execution and
# a much larger build. Debug assertions on: overflow is a finding.
build=(-s none -a)
(cd fuzz && cargo fuzz build "${build[@]}" 2>&1 | tail -n 3 >&2) || {
  note "build failed"
  exit 1
}
note "fuzz build: $(du -sh fuzz/target | cut -f1) in fuzz/target"

failed=()
printf '%-12s %8s %10s %8s  %s\n' target cpu_s execs corpus result
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  log="fuzz/artifacts/$t/last-run.log"
  rc=0 cpu=0 execs=0
  # One run in wall-time mode; in --cpu mode, runs of at most 5 minutes
  # until the target has had SECONDS of CPU.
  while ((rc == 0)); do
    if $cpu_mode; then
      left=$((seconds - cpu))
      ((left > 0)) || break
      wall=$((left < 300 ? left : 300))
    else
      wall=$seconds
    fi
    # 2 GB of RSS and 64 KiB of input: a .proto larger than that adds only
    # length, and anything that needs more memory is a finding.
    /usr/bin/time -f '%U %S' -o "fuzz/artifacts/$t/time" \
      "fuzz/target/x86_64-unknown-linux-gnu/release/$t" \
      -max_total_time="$wall" -rss_limit_mb=2048 -max_len=65536 -timeout=20 \
      -artifact_prefix="fuzz/artifacts/$t/" -print_final_stats=1 \
      "fuzz/corpus/$t" >"$log" 2>&1 || rc=$?
    cpu=$((cpu + $(tail -n1 "fuzz/artifacts/$t/time" | awk '{printf "%.0f", $1+$2}')))
    execs=$((execs + $(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)))
    $cpu_mode || break
  done
  corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
  if ((rc == 0)); then
    result=ok
  else
    result="FAILED (exit $rc): $(grep -m1 -oE 'ERROR: libFuzzer: [a-z-]+|panicked at [^,]*|deadly signal|out-of-memory' "$log" || echo see "$log")"
    failed+=("$t")
  fi
  printf '%-12s %8s %10s %8s  %s\n' "$t" "$cpu" "$execs" "$corpus" "$result"
done
if ((${#failed[@]})); then
  note "failed: ${failed[*]} (inputs in fuzz/artifacts/<target>/, logs in last-run.log)"
  exit 1
fi
