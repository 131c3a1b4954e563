//! The help text and the README's manual against clap's command tree: every
//! argument described, usage lines readable, and the manual's command list
//! naming exactly the commands and long flags that exist.

use std::collections::BTreeSet;

use clap::CommandFactory;

use super::Cli;

/// Every subcommand that runs (not a group), by its path (`namespace create`).
fn leaves(cmd: &clap::Command, path: &str, out: &mut Vec<(String, clap::Command)>) {
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let p = format!("{path} {}", sub.get_name()).trim().to_string();
        if sub.has_subcommands() {
            leaves(sub, &p, out);
        } else {
            out.push((p, sub.clone()));
        }
    }
}

/// `--help` and `--version`, which clap adds.
fn is_builtin(arg: &clap::Arg) -> bool {
    use clap::ArgAction::*;
    matches!(arg.get_action(), Help | HelpShort | HelpLong | Version)
}

/// The long flags a command takes, its own only (not the global ones).
fn own_longs(cmd: &clap::Command) -> BTreeSet<String> {
    cmd.get_arguments()
        .filter(|a| !a.is_global_set() && !is_builtin(a))
        .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
        .collect()
}

fn built() -> clap::Command {
    let mut cmd = Cli::command();
    // Propagates global arguments and finishes usage, as parsing would.
    cmd.build();
    cmd
}

#[test]
fn every_argument_and_command_is_described() {
    let root = built();
    let mut missing = Vec::new();
    for a in root.get_arguments().filter(|a| !is_builtin(a)) {
        if a.get_help().is_none_or(|h| h.to_string().trim().is_empty()) {
            missing.push(format!("protoshelf {}", a.get_id()));
        }
    }
    let mut all = Vec::new();
    leaves(&root, "", &mut all);
    assert!(all.len() >= 20, "{} commands", all.len());
    for (path, cmd) in &all {
        if cmd.get_about().is_none() {
            missing.push(format!("{path} (the command)"));
        }
        for a in cmd
            .get_arguments()
            .filter(|a| !is_builtin(a) && !a.is_global_set())
        {
            if a.get_help().is_none_or(|h| h.to_string().trim().is_empty()) {
                missing.push(format!("{path}: {}", a.get_id()));
            }
        }
    }
    assert!(missing.is_empty(), "no description: {missing:#?}");
}

#[test]
fn usage_lines_name_their_values() {
    let mut root = built();
    let mut all = Vec::new();
    leaves(&root.clone(), "", &mut all);
    for (path, _) in &all {
        let mut cmd = &mut root;
        for word in path.split(' ') {
            cmd = cmd.find_subcommand_mut(word).unwrap();
        }
        let usage = cmd.render_usage().to_string();
        for bad in ["<ARGS>", "<ARG>", "]...", "<NAMESPACE>..."] {
            assert!(!usage.contains(bad), "{path}: {usage}");
        }
        // A command whose namespace may come from -n shows it as optional
        // (`[NAMESPACE]`, also where the arguments are one list).
        let optional_ns = cmd.get_arguments().any(|a| {
            a.is_positional()
                && (a.get_value_names().is_some_and(|n| n[0] == "NAMESPACE")
                    && !a.is_required_set()
                    || a.get_help()
                        .is_some_and(|h| h.to_string().starts_with("[NAMESPACE]")))
        });
        if optional_ns {
            assert!(usage.contains(" [NAMESPACE]"), "{path}: {usage}");
        }
    }
}

/// The README's command list: the fenced block after `## Commands`. Each
/// entry starts at two spaces with the command's words; lines indented
/// further continue the entry above. The first line holds the global flags.
fn manual() -> (BTreeSet<String>, Vec<(String, BTreeSet<String>)>) {
    let readme = include_str!("../../README.md");
    let section = readme
        .split("\n## Commands\n")
        .nth(1)
        .expect("a `## Commands` section");
    let block = section
        .split("```")
        .nth(1)
        .expect("a fenced block in `## Commands`");
    let longs = |line: &str| -> BTreeSet<String> {
        line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .filter(|w| w.starts_with("--") && w.len() > 2)
            .map(str::to_string)
            .collect()
    };
    let mut global = BTreeSet::new();
    let mut entries: Vec<(String, BTreeSet<String>)> = Vec::new();
    for line in block.lines().skip(1) {
        if let Some(rest) = line.strip_prefix("protoshelf ") {
            global = longs(rest);
        } else if line.starts_with("   ") {
            let (_, flags) = entries.last_mut().expect("a continuation after an entry");
            flags.extend(longs(line));
        } else if let Some(rest) = line.strip_prefix("  ") {
            let words: Vec<&str> = rest
                .split_whitespace()
                .take_while(|w| {
                    w.chars().all(|c| c.is_ascii_lowercase() || c == '-') && !w.starts_with('-')
                })
                .collect();
            entries.push((words.join(" "), longs(rest)));
        }
    }
    (global, entries)
}

#[test]
fn readme_documents_every_command_and_flag() {
    let root = built();
    let (global, entries) = manual();
    let clap_global: BTreeSet<String> = root
        .get_arguments()
        .filter(|a| a.is_global_set())
        .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
        .collect();
    assert_eq!(global, clap_global, "the README's global flags");
    let mut all = Vec::new();
    leaves(&root, "", &mut all);
    let documented: BTreeSet<&str> = entries.iter().map(|(p, _)| p.as_str()).collect();
    for (path, cmd) in &all {
        assert!(
            documented.contains(path.as_str()),
            "`{path}` is not in the README's command list"
        );
        let flags: BTreeSet<String> = entries
            .iter()
            .filter(|(p, _)| p == path)
            .flat_map(|(_, f)| f.iter().cloned())
            .collect();
        let own = own_longs(cmd);
        let undocumented: Vec<_> = own.difference(&flags).collect();
        assert!(
            undocumented.is_empty(),
            "`{path}`: the README omits {undocumented:?}"
        );
        let unknown: Vec<_> = flags
            .iter()
            .filter(|f| !own.contains(*f) && !clap_global.contains(*f))
            .collect();
        assert!(
            unknown.is_empty(),
            "`{path}`: the README documents {unknown:?}, which clap does not know"
        );
    }
    let commands: BTreeSet<&str> = all.iter().map(|(p, _)| p.as_str()).collect();
    for path in documented {
        assert!(
            commands.contains(path),
            "the README documents `{path}`, which does not exist"
        );
    }
}
