//! The fuzz targets' bodies (fuzz/src/lib.rs, shared with cargo-fuzz) over
//! every saved input: the seed corpora (`fuzz/corpus/<target>/seed-*`) and
//! every input a fuzzer ever failed on (`fuzz/regressions/<target>/`), so a
//! fixed finding stays fixed without nightly or cargo-fuzz.

#[path = "../../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod harness;

use std::path::{Path, PathBuf};

fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut out = Vec::new();
    for (dir, seeds_only) in [("corpus", true), ("regressions", false)] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for e in entries {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            // Locally the corpus also holds what fuzzing found; git keeps
            // only the seeds.
            if name.starts_with('.') || (seeds_only && !name.starts_with("seed-")) {
                continue;
            }
            out.push(path);
        }
    }
    out.sort();
    out
}

/// Runs `body` over each input on a thread with libFuzzer's main-thread
/// stack (8 MiB), naming the input that fails.
fn run(target: &str, body: fn(&[u8])) {
    let all = inputs(target);
    assert!(!all.is_empty(), "no saved inputs for {target}");
    for path in &all {
        let data = std::fs::read(path).unwrap();
        let ran = std::thread::Builder::new()
            .stack_size(8 << 20)
            .spawn(move || body(&data))
            .unwrap()
            .join();
        assert!(ran.is_ok(), "{target}: {} fails", path.display());
    }
    println!("{target}: {} inputs", all.len());
}

#[test]
fn compile() {
    run("compile", harness::compile);
}

#[test]
fn records() {
    run("records", harness::records);
}

#[test]
fn descriptors() {
    run("descriptors", harness::descriptors);
}

#[test]
fn mount_paths() {
    run("mount_paths", harness::mount_paths);
}
