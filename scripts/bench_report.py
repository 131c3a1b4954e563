#!/usr/bin/env python3
"""Turns the measurements scripts/bench.sh collected into docs/benchmarks.md.

Usage: bench_report.py RESULTS NFILES CORPUS_MB MACHINE VERSIONS RUNS SIZES
                       COLD(true|false) S3(true|false)
Only reads what bench.sh measured in this run; every ratio is of two
commands timed side by side by one hyperfine invocation.
"""

import json
import os
import re
import sys

results, nfiles, corpus_mb, machine, versions, runs, sizes, cold, s3 = sys.argv[1:10]
cold = cold == "true"
backends = ["local"] + (["s3"] if s3 == "true" else [])
LABEL = {"local": "local directory", "s3": "LocalStack S3"}


def path(name):
    return os.path.join(results, name)


def exists(name):
    return os.path.exists(path(name))


def medians(name):
    """hyperfine export → {command name: median seconds}."""
    with open(path(name)) as f:
        data = json.load(f)
    return {r["command"]: r["median"] for r in data["results"]}


def text(name):
    with open(path(name)) as f:
        return f.read().strip()


def stats(name):
    """The `--stats` line → {kind: count, 'bytes': n}."""
    line = [l for l in text(name).splitlines() if l.startswith("requests:")][-1]
    out = {k.lower(): int(v) for k, v in re.findall(r"\b(GET|HEAD|PUT|LIST|DELETE|COPY) (\d+)", line)}
    out["total"] = int(re.search(r"requests: (\d+) requests", line).group(1))
    out["bytes"] = int(re.search(r"bytes written (\d+)", line).group(1))
    return out


def count_objects(store, sub):
    root = os.path.join(store, sub)
    return sum(len(files) for _, _, files in os.walk(root))


def ratio(a, b):
    return a / b if b else float("nan")


def verdict(value, limit):
    return "met" if value <= limit else "**missed**"


goals = []  # (goal, target, backend, value, limit, unit)
rows = []
out = []
w = out.append

w("# Benchmarks")
w("")
w("Written by `scripts/bench.sh` (one command, from a fresh clone). Every ratio")
w("compares two commands timed side by side in the same run by one hyperfine")
w("invocation; tests never check timings. Rerun with `scripts/bench.sh`.")
w("")
w(f"- Machine: {machine}")
w(f"- Versions: {versions}")
w(f"- Corpus: npm `google-proto-files@5.0.3`, every `.proto` outside `google/protobuf/`: **{nfiles} files, {corpus_mb} MB**")
w(f"- hyperfine runs per comparison: {runs} (medians); scale curves: {sizes} schemas")
w("")

# ---- per backend tables ----
load_tbl = []
mount_tbl = []
req_tbl = []
misc_tbl = []
for b in backends:
    lm = medians(f"load-{b}.json")
    t_load, t_protoc, t_buf = lm["protoshelf load"], lm["protoc"], lm["buf build"]
    load_tbl.append(f"| {LABEL[b]} | {t_load:.2f} s | {t_protoc:.2f} s | {t_buf:.2f} s | **{ratio(t_load, t_protoc):.2f}×** | {ratio(t_load, t_buf):.2f}× |")
    st = stats(f"load-stats-{b}.txt")
    rss = int(text(f"load-rss-{b}.txt").splitlines()[-1]) / 1024
    store = text(f"store-{b}.txt")
    if b == "local":
        blobs = count_objects(store, "ns/g/blobs")
        vers = count_objects(store, "ns/g/versions")
    req_tbl.append(
        f"| {LABEL[b]} | {st['total']} | {st['get']} | {st['list']} | {st['put']} | {st['bytes'] / 1e6:.1f} MB | {rss:.0f} MB |"
    )
    goals.append(("`load` of the corpus vs protoc", "≤ 2× (local), ≤ 4× (S3)", b, ratio(t_load, t_protoc), 2.0 if b == "local" else 4.0, "×"))

    pw = medians(f"protoc-warm-{b}.json")
    ls = medians(f"ls-{b}.json")
    ct = medians(f"cat-{b}.json")
    mount_tbl.append(f"| protoc, warm | {LABEL[b]} | {pw['mount']:.3f} s | {pw['local disk']:.3f} s | **{ratio(pw['mount'], pw['local disk']):.2f}×** |")
    goals.append(("protoc through the mount, warm", "≤ 1.10×", b, ratio(pw["mount"], pw["local disk"]), 1.10, "×"))
    if cold and exists(f"protoc-cold-{b}.json"):
        pc = medians(f"protoc-cold-{b}.json")
        mount_tbl.append(f"| protoc, cold (mount start included) | {LABEL[b]} | {pc['mount']:.3f} s | {pc['local disk']:.3f} s | **{ratio(pc['mount'], pc['local disk']):.2f}×** |")
        if b == "s3":
            goals.append(("protoc through the mount, cold, S3", "≤ 1.5×", b, ratio(pc["mount"], pc["local disk"]), 1.5, "×"))
    mount_tbl.append(f"| `ls -R`, warm | {LABEL[b]} | {ls['mount'] * 1e3:.1f} ms | {ls['local disk'] * 1e3:.1f} ms | **{ratio(ls['mount'], ls['local disk']):.2f}×** |")
    mount_tbl.append(f"| read every file, warm | {LABEL[b]} | {ct['mount'] * 1e3:.1f} ms | {ct['local disk'] * 1e3:.1f} ms | **{ratio(ct['mount'], ct['local disk']):.2f}×** |")
    goals.append(("`ls -R`, warm", "≤ 2×", b, ratio(ls["mount"], ls["local disk"]), 2.0, "×"))
    goals.append(("read every file, warm", "≤ 2×", b, ratio(ct["mount"], ct["local disk"]), 2.0, "×"))
    first = int(text(f"first-protoc-{b}.txt"))
    mrss = int(text(f"mount-rss-{b}.txt")) / 1024
    idle_requests, idle_rounds = map(int, text(f"idle-{b}.txt").split())
    per_round = idle_requests / max(idle_rounds, 1)
    misc_tbl.append(f"| {LABEL[b]} | {first} ms | {mrss:.0f} MB | {idle_requests} in {idle_rounds} refresh rounds (30 s) |")
    if exists(f"scale-{b}.json"):
        sc = json.load(open(path(f"scale-{b}.json")))
        sz = sc["sizes"]
        if sz:
            big, small = sz[-1], sz[0]
            span = f"{small['size']} → {big['size']} schemas"
            goals.append((f"one publish, {span}", "≤ 12 requests", b, max(s["publish_requests_max"] for s in sz), 12, "requests"))
            goals.append((f"one promote, {span}", "≤ 6 requests", b, max(s["promote_requests_max"] for s in sz), 6, "requests"))
            goals.append((f"publish time at {big['size']} vs {small['size']} schemas", "≤ 1.5×", b, ratio(big["publish_ms"], small["publish_ms"]), 1.5, "×"))
            goals.append((f"promote time at {big['size']} vs {small['size']} schemas", "≤ 1.5×", b, ratio(big["promote_ms"], small["promote_ms"]), 1.5, "×"))
        for i in sc["idle"]:
            goals.append((f"idle mount of {i['namespaces']} namespace(s): requests per namespace per refresh", "≤ 1", b, i["per_namespace_per_round"], 1.0, ""))
    goals.append(("idle real mount of 1 namespace: requests per refresh", "≤ 1", b, per_round, 1.0, ""))

w("## Goals")
w("")
w("| goal | target | backend | measured | |")
w("|---|---|---|---|---|")
for goal, target, b, value, limit, unit in goals:
    shown = f"{value:.0f}" if unit == "requests" else f"{value:.2f}{unit}"
    w(f"| {goal} | {target} | {LABEL[b]} | {shown} | {verdict(value, limit)} |")
w("")
w("Bytes written per commit are in the scale curves (§5): deltas stay the same size")
w("whatever the history; checkpoints (every 8th commit at most) hold the whole state.")
w("")

w("## 1. `load` of the whole corpus")
w("")
w("| store | `protoshelf load --promote` | `protoc --include_imports` | `buf build --exclude-source-info` | load / protoc | load / buf |")
w("|---|---|---|---|---|---|")
out.extend(load_tbl)
w("")
w(f"Requests of one load (`--stats`), against {nfiles} files, {blobs} unique blobs and {vers} versions:")
w("")
w("| store | requests | GET | LIST | PUT | bytes written | peak RSS |")
w("|---|---|---|---|---|---|---|")
out.extend(req_tbl)
w("")

w("## 2–3. Through the mount against local disk")
w("")
w("`local disk` is a copy of the mounted tree (`cp -r <mnt>/g/current`), so both")
w("sides compile identical files; the run checks that protoc's output is")
w("byte-identical. Cold runs drop the page cache (`echo 3 > /proc/sys/vm/drop_caches`)")
w("before each run and start a fresh mount inside the timed command." if cold else "Cold runs were skipped: dropping the page cache needs root.")
w("")
w("| workload | store | mount | local disk | ratio |")
w("|---|---|---|---|---|")
out.extend(mount_tbl)
w("")

w("## 4. Mount start, memory, idle")
w("")
w("| store | mount → first successful protoc of one file (median) | mount peak RSS, whole corpus read | idle requests |")
w("|---|---|---|---|")
out.extend(misc_tbl)
w("")

w("## 5–6. Scale curves and idle mounts")
w("")
w("From `benches/scale.rs` (`cargo bench --bench scale -- --store BASE`).")
w("")
for b in backends:
    name = f"scale-{b}.md"
    if exists(name):
        w(f"### {LABEL[b]}")
        w("")
        out.append(text(name))
        w("")

w("## Commands")
w("")
w("```")
w("protoshelf --store STORE init && protoshelf --store STORE namespace create g")
w("protoshelf --store STORE load g . --promote            # in the corpus directory")
w("protoc --include_imports -o /dev/null @files.args -I .")
w("buf build . -o /dev/null --exclude-source-info         # buf.yaml: version: v2")
w("protoshelf --store STORE mount MNT -n g &")
w("protoc --include_imports -o /dev/null @files.args -I MNT/g/current   # vs -I COPY")
w("ls -R MNT/g/current                                     # vs ls -R COPY")
w("find MNT/g/current -type f -exec cat {} + >/dev/null    # vs COPY")
w("cargo bench --bench scale -- --store BASE --sizes " + sizes + " --idle 1,100")
w("```")
print("\n".join(out))
