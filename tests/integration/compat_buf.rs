//! Compares the `wire` and `wire_json` policies with buf itself.
//!
//! Every directory under `tests/compat_cases/` holds one schema evolution:
//! `old/` and `new/` trees of `.proto` files. For each one and each policy,
//! the set of rule IDs reported by `protoshelf::compat::check` must equal the
//! set reported by `buf breaking` with the matching category (`WIRE` or
//! `WIRE_JSON`).
//!
//! buf comes from `$PROTOSHELF_BUF`, or from the cache where
//! `scripts/buf-compare.sh` installs it. Without buf the test is skipped,
//! unless `CI=true`, where it fails.

use std::collections::BTreeSet;
use std::env;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use prost_reflect::DescriptorPool;
use protoshelf::compat::{self, Policy};

const CATEGORIES: [(Policy, &str); 2] = [(Policy::Wire, "WIRE"), (Policy::WireJson, "WIRE_JSON")];

#[test]
fn wire_policies_agree_with_buf() {
    let Some(buf) = find_buf() else {
        let message = "buf not found: set PROTOSHELF_BUF or run scripts/buf-compare.sh";
        if env::var("CI").as_deref() == Ok("true") {
            panic!("{message}");
        }
        report(&format!(
            "\n!!!!!!!! SKIPPED compat_buf: {message} !!!!!!!!\n"
        ));
        return;
    };

    let cases_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat_cases");
    let mut case_dirs: Vec<PathBuf> = fs::read_dir(&cases_dir)
        .expect("tests/compat_cases")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.is_dir())
        .collect();
    case_dirs.sort();

    let mut compared = 0;
    let mut mismatches = Vec::new();
    let mut rules_seen = BTreeSet::new();
    for case_dir in &case_dirs {
        let name = case_dir.file_name().unwrap().to_string_lossy();
        let (old, files) = compile(&case_dir.join("old"));
        let (new, _) = compile(&case_dir.join("new"));
        for (policy, category) in CATEGORIES {
            let violations = compat::check(policy, &old, &new, &files);
            let ours: BTreeSet<String> = violations.iter().map(|v| v.rule.to_owned()).collect();
            let (theirs, buf_output) = run_buf(&buf, case_dir, category);
            compared += 1;
            rules_seen.extend(theirs.iter().map(|rule| (category, rule.clone())));
            if ours != theirs {
                let ours_only: Vec<_> = ours.difference(&theirs).collect();
                let buf_only: Vec<_> = theirs.difference(&ours).collect();
                let ours_listed: Vec<String> = violations.iter().map(|v| v.to_string()).collect();
                mismatches.push(format!(
                    "{name} [{policy}]: only protoshelf {ours_only:?}, only buf {buf_only:?}\n  \
                     protoshelf:\n    {}\n  buf:\n    {}",
                    ours_listed.join("\n    "),
                    buf_output.trim().replace('\n', "\n    "),
                ));
            }
        }
    }

    let agreements = compared - mismatches.len();
    report(&format!(
        "buf comparison: {compared} cases, {agreements} agreements \
         ({} evolutions, each under wire and wire_json)",
        case_dirs.len()
    ));
    assert!(
        mismatches.is_empty(),
        "{} disagreements with buf:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );

    // Keep the corpus broad: every rule must be broken by some case.
    let unexercised: Vec<String> = CATEGORIES
        .iter()
        .flat_map(|&(policy, category)| {
            let rules = policy.rules().iter();
            rules.map(move |rule| (category, rule.to_string()))
        })
        .filter(|pair| !rules_seen.contains(pair))
        .map(|(category, rule)| format!("{rule} [{category}]"))
        .collect();
    assert!(
        unexercised.is_empty(),
        "rules no case breaks: {unexercised:?}"
    );
}

/// Writes to stderr directly, which the test harness does not capture, so
/// the line shows even when the test passes.
fn report(line: &str) {
    let _ = writeln!(io::stderr(), "{line}");
}

fn find_buf() -> Option<PathBuf> {
    if let Some(path) = env::var_os("PROTOSHELF_BUF") {
        return Some(PathBuf::from(path));
    }
    let cache = match env::var_os("PROTOSHELF_CACHE") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env::var_os("HOME")?).join(".cache/protoshelf"),
    };
    let path = cache.join("buf/node_modules/.bin/buf");
    path.is_file().then_some(path)
}

/// Compiles every `.proto` file under `root` (as the registry would, with
/// imports and source info) and returns the pool and the files' paths.
fn compile(root: &Path) -> (DescriptorPool, Vec<String>) {
    let mut files = Vec::new();
    collect_protos(root, root, &mut files);
    files.sort();
    let mut compiler = protox::Compiler::new([root]).expect("compiler");
    compiler.include_imports(true).include_source_info(true);
    compiler
        .open_files(&files)
        .unwrap_or_else(|e| panic!("compiling {}: {e:?}", root.display()));
    let pool = DescriptorPool::from_file_descriptor_set(compiler.file_descriptor_set())
        .expect("descriptor pool");
    (pool, files)
}

fn collect_protos(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            collect_protos(root, &path, out);
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            let relative = path.strip_prefix(root).unwrap();
            out.push(relative.to_string_lossy().replace('\\', "/"));
        }
    }
}

/// Runs `buf breaking` on a case; returns the rule IDs it reported and its
/// raw output.
fn run_buf(buf: &Path, case_dir: &Path, category: &str) -> (BTreeSet<String>, String) {
    let config = format!(r#"{{"version":"v2","breaking":{{"use":["{category}"]}}}}"#);
    // buf wants the input to be the module the config describes, so it runs
    // from inside `new/`.
    let output = Command::new(buf)
        .current_dir(case_dir.join("new"))
        .arg("breaking")
        .arg(".")
        .arg("--against")
        .arg(case_dir.join("old"))
        .args(["--config", &config, "--error-format", "json"])
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", buf.display()));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    // 100 means breaking changes were found.
    assert!(
        matches!(output.status.code(), Some(0 | 100)),
        "buf failed on {}: {}\n{stdout}",
        case_dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let rules = stdout
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let annotation: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("unexpected buf output {line:?}: {e}"));
            annotation["type"].as_str().expect("rule ID").to_owned()
        })
        .collect();
    (rules, stdout)
}
