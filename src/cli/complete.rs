//! Dynamic shell completion (clap_complete's `CompleteEnv` engine): names
//! of namespaces, schemas and versions, read from the store the command
//! line names. `source <(COMPLETE=bash protoshelf)` installs it.
//!
//! A completer only gets the word being completed, so each one reads the
//! rest of the line from the process arguments the shell passed
//! (`protoshelf -- <words>`, the word's index in `_CLAP_COMPLETE_INDEX`)
//! and parses it with clap, ignoring errors (it is unfinished). Completion
//! only reads, never creates a store, and shows nothing on any failure.

use std::ffi::{OsStr, OsString};
use std::time::Duration;

use clap::CommandFactory;
use clap_complete::engine::{
    ArgValueCompleter, CompletionCandidate, PathCompleter, ValueCompleter,
};
use protoshelf::objstore::url::{self, RequestBudget};
use protoshelf::registry::Registry;

use super::Cli;

/// What a positional argument after the optional namespace names.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Schema,
    Version,
    /// Files and directories, repeatable (the last slot repeats).
    Paths,
    Dir,
}

/// How long completion waits for the store: a shell must not hang.
const BUDGET: Duration = Duration::from_secs(3);

/// The namespace positional and the ones after it of a command taking
/// `[NAMESPACE] <rest...>`: completes by the namespace rule (with -n or
/// PROTOSHELF_NAMESPACE set, the first word is already `rest[0]`).
pub fn after_ns(rest: &'static [Slot]) -> ArgValueCompleter {
    ArgValueCompleter::new(move |current: &OsStr| {
        let line = Line::parse();
        let (ns, typed) = match &line.namespace {
            Some(ns) => (Some(ns.clone()), line.positionals.clone()),
            None => (
                line.positionals.first().cloned(),
                line.positionals.iter().skip(1).cloned().collect(),
            ),
        };
        let slot = match (&line.namespace, line.positionals.len()) {
            (None, 0) => None,
            (_, _) => Some(
                rest.get(typed.len())
                    .or(rest.last().filter(|s| **s == Slot::Paths)),
            ),
        };
        match slot {
            None => matching(line.namespaces(), current),
            Some(None) => Vec::new(),
            Some(Some(Slot::Paths)) => PathCompleter::any().complete(current),
            Some(Some(Slot::Dir)) => PathCompleter::dir().complete(current),
            Some(Some(Slot::Schema)) => matching(line.schemas(ns.as_deref()), current),
            Some(Some(Slot::Version)) => matching(
                line.versions(ns.as_deref(), typed.first().map(String::as_str)),
                current,
            ),
        }
    })
}

/// Namespace names, where a namespace is always meant (`namespace info`,
/// `-n`).
pub fn namespaces() -> ArgValueCompleter {
    ArgValueCompleter::new(|current: &OsStr| matching(Line::parse().namespaces(), current))
}

fn matching(names: Vec<String>, current: &OsStr) -> Vec<CompletionCandidate> {
    let current = current.to_string_lossy();
    names
        .into_iter()
        .filter(|n| n.starts_with(current.as_ref()))
        .map(CompletionCandidate::new)
        .collect()
}

/// `cmd` with every positional read as text: an unfinished line parsed
/// with errors ignored drops a value its parser refuses (a schema where a
/// version is due), which would shift the words that follow.
fn lenient(cmd: clap::Command) -> clap::Command {
    cmd.mut_args(|a| {
        if a.is_positional() {
            a.value_parser(clap::builder::NonEmptyStringValueParser::new())
        } else {
            a
        }
    })
    .mut_subcommands(lenient)
}

/// The command line before the word being completed.
struct Line {
    store: Option<String>,
    /// From -n/--namespace or PROTOSHELF_NAMESPACE.
    namespace: Option<String>,
    /// The command's positional words, in order.
    positionals: Vec<String>,
}

impl Line {
    fn parse() -> Line {
        let args: Vec<OsString> = std::env::args_os().collect();
        // `protoshelf -- protoshelf <words...>`
        let words: Vec<OsString> = match args.iter().position(|a| a == "--") {
            Some(i) => args[i + 1..].to_vec(),
            None => args,
        };
        let index: usize = std::env::var("_CLAP_COMPLETE_INDEX")
            .ok()
            .and_then(|i| i.parse().ok())
            .unwrap_or(words.len().saturating_sub(1));
        let before = &words[..index.min(words.len())];
        let mut line = Line {
            store: None,
            namespace: None,
            positionals: Vec::new(),
        };
        let parser = lenient(Cli::command()).ignore_errors(true);
        let Ok(mut m) = parser.try_get_matches_from(before) else {
            return line;
        };
        loop {
            if let Ok(Some(s)) = m.try_get_one::<String>("store") {
                line.store = Some(s.clone());
            }
            if let Ok(Some(mut ns)) = m.try_get_many::<String>("namespace") {
                line.namespace = ns.next_back().cloned().or(line.namespace);
            }
            match m.remove_subcommand() {
                Some((_, sub)) => m = sub,
                None => break,
            }
        }
        let mut typed: Vec<(usize, String)> = Vec::new();
        for id in ["ns", "schema", "args", "dir", "version"] {
            // Ids the command does not have are errors, not None.
            if let Ok(Some(values)) = m.try_get_raw(id)
                && let Some(indices) = m.indices_of(id)
            {
                typed.extend(indices.zip(values.map(|v| v.to_string_lossy().into_owned())));
            }
        }
        typed.sort();
        line.positionals = typed.into_iter().map(|(_, v)| v).collect();
        line
    }

    /// Runs `read` on the registry of the line's store, if it exists.
    fn read<T: Default>(&self, read: impl AsyncFnOnce(Registry) -> protoshelf::Result<T>) -> T {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return T::default();
        };
        let url = url::resolve(self.store.as_deref());
        rt.block_on(async {
            let backend = url::open_existing(&url, Some(RequestBudget(BUDGET))).ok()?;
            let store = protoshelf::ObjStore::open_existing(backend, 1 << 20)
                .await
                .ok()?;
            read(Registry::new(store)).await.ok()
        })
        .unwrap_or_default()
    }

    fn namespaces(&self) -> Vec<String> {
        self.read(async |r| {
            let all = r.store().list_namespaces().await?;
            Ok(all.into_iter().map(|n| n.id).collect())
        })
    }

    fn schemas(&self, ns: Option<&str>) -> Vec<String> {
        let Some(ns) = ns else { return Vec::new() };
        self.read(async |r| {
            let all = r.list_schemas(ns).await?;
            Ok(all.into_iter().map(|s| s.schema_id).collect())
        })
    }

    fn versions(&self, ns: Option<&str>, schema: Option<&str>) -> Vec<String> {
        let (Some(ns), Some(schema)) = (ns, schema) else {
            return Vec::new();
        };
        self.read(async |r| {
            let info = r.schema_info(ns, schema).await?;
            Ok(info.versions.iter().rev().map(u64::to_string).collect())
        })
    }
}
