//! Compiling with protox: gather the import closure asynchronously (each
//! file fetched and parsed once, only the files imports reach), then
//! compile synchronously from memory, within the time limit.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use prost_reflect::{DescriptorPool, FileDescriptor, MessageDescriptor};
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};

use super::view::{Owner, View};
use crate::error::{Error, Result};

/// Recorded with every version; descriptors are reused on restore only when
/// it matches (a test keeps it equal to the locked protox version).
pub const COMPILER_VERSION: &str = "protox 0.10.0";

/// Where a file of a compile came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A file being published, by the index of its batch member.
    Own(usize),
    /// The namespace's staged-or-current tree.
    Namespace(Owner),
    /// The `__builtins__` namespace's current tree.
    Builtins(Owner),
}

/// The sources of one compile, by import path. Compiling hands each parsed
/// file to the compiler (`None` afterwards): the compiled pool holds the
/// same descriptors, and keeping both doubled a whole-tree load's memory.
#[derive(Default)]
pub struct Sources {
    pub files: HashMap<String, (Option<File>, Origin)>,
}

/// Formats a protox error as `file:line:column: message` when it has a
/// location, keeping protox's message unchanged.
pub fn describe(e: &protox::Error) -> String {
    use miette::Diagnostic;
    let message = e.to_string();
    let located = e
        .source_code()
        .zip(e.labels().and_then(|mut l| l.next()))
        .and_then(|(src, label)| {
            let span = src.read_span(label.inner(), 0, 0).ok()?;
            let file = span
                .name()
                .map(str::to_string)
                .or_else(|| e.file().map(str::to_string))?;
            Some(format!(
                "{file}:{}:{}: {message}",
                span.line() + 1,
                span.column() + 1
            ))
        });
    located.unwrap_or_else(|| match e.file() {
        Some(f) if !message.contains(f) => format!("{f}: {message}"),
        _ => message,
    })
}

fn compile_error(e: &protox::Error) -> Error {
    Error::Compile(describe(e))
}

fn parse(path: &str, source: &str) -> Result<File> {
    File::from_source(path, source).map_err(|e| compile_error(&e))
}

impl Sources {
    /// Parses the files being published, on every core (a corpus load
    /// parses thousands). `own`: (member index, path, source). The first
    /// file in `own` order that fails is the error reported.
    pub fn new(own: &[(usize, String, String)]) -> Result<Self> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let chunk = own.len().div_ceil(threads).max(64);
        let parsed: Vec<Result<File>> = std::thread::scope(|scope| {
            let workers: Vec<_> = own
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .map(|(_, path, source)| parse(path, source))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().expect("parser thread panicked"))
                .collect()
        });
        let mut files = HashMap::new();
        for ((member, path, _), file) in own.iter().zip(parsed) {
            files.insert(path.clone(), (Some(file?), Origin::Own(*member)));
        }
        Ok(Sources { files })
    }

    /// Adds a file from elsewhere (a recorded dependency).
    pub fn add(&mut self, path: &str, source: &str, origin: Origin) -> Result<()> {
        self.files
            .insert(path.to_string(), (Some(parse(path, source)?), origin));
        Ok(())
    }

    /// Fetches every import the files reach that they do not define
    /// themselves: from `namespace`, then `builtins`; well-known types are
    /// left to protox. A missing import is left for the compiler to report
    /// with its location.
    pub async fn gather(&mut self, namespace: &View, builtins: Option<&View>) -> Result<()> {
        let mut seen: BTreeSet<String> = self.files.keys().cloned().collect();
        let mut wanted = self.imports_not_in(&seen);
        while !wanted.is_empty() {
            seen.extend(wanted.iter().cloned());
            let found: Vec<Option<(String, File, Origin)>> = futures::stream::iter(wanted)
                .map(|path| async move { fetch(path, namespace, builtins).await })
                .buffer_unordered(16)
                .try_collect()
                .await?;
            for (path, file, origin) in found.into_iter().flatten() {
                self.files.insert(path, (Some(file), origin));
            }
            wanted = self.imports_not_in(&seen);
        }
        Ok(())
    }

    fn imports_not_in(&self, seen: &BTreeSet<String>) -> BTreeSet<String> {
        self.files
            .values()
            .filter_map(|(f, _)| f.as_ref())
            .flat_map(|f| f.file_descriptor_proto().dependency.iter())
            .filter(|d| !seen.contains(*d))
            .cloned()
            .collect()
    }

    /// Compiles `roots` (with everything they import), off the async
    /// runtime and within `timeout`. The parsed files move into the
    /// compiler; origins stay.
    pub async fn compile(
        &mut self,
        roots: Vec<String>,
        timeout: Duration,
    ) -> Result<DescriptorPool> {
        let files: HashMap<String, File> = self
            .files
            .iter_mut()
            .filter_map(|(path, (f, _))| Some((path.clone(), f.take()?)))
            .collect();
        let resolver = Resolver(std::sync::Mutex::new(files));
        let job = tokio::task::spawn_blocking(move || {
            let mut compiler = protox::Compiler::with_file_resolver(resolver);
            compiler.include_imports(true).include_source_info(true);
            compiler.open_files(&roots).map_err(|e| compile_error(&e))?;
            Ok(compiler.descriptor_pool())
        });
        match tokio::time::timeout(timeout, job).await {
            Ok(joined) => joined.map_err(|e| Error::Compile(format!("compiler crashed: {e}")))?,
            Err(_) => Err(Error::Compile(format!(
                "compilation did not finish within {} s",
                timeout.as_secs()
            ))),
        }
    }
}

async fn fetch(
    path: String,
    namespace: &View,
    builtins: Option<&View>,
) -> Result<Option<(String, File, Origin)>> {
    if let Some(owner) = namespace.owner_of_import(&path).await? {
        let file = parse(&path, &namespace.source(&owner).await?)?;
        return Ok(Some((path, file, Origin::Namespace(owner))));
    }
    if let Some(b) = builtins
        && let Some(owner) = b.owner_of_import(&path).await?
    {
        let file = parse(&path, &b.source(&owner).await?)?;
        return Ok(Some((path, file, Origin::Builtins(owner))));
    }
    // Well-known types come from protox; anything else is reported missing
    // by the compiler, at the import that names it.
    Ok(None)
}

/// Serves gathered files, then the well-known types. The compiler opens
/// each file once, so a file is handed over, not copied.
struct Resolver(std::sync::Mutex<HashMap<String, File>>);

impl FileResolver for Resolver {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        if let Some(file) = self.0.lock().unwrap().remove(name) {
            return Ok(file);
        }
        let mut chain = ChainFileResolver::new();
        chain.add(GoogleFileResolver::new());
        chain.open_file(name)
    }
}

/// `roots` and everything they import, dependencies first.
pub fn closure(pool: &DescriptorPool, roots: &[String]) -> Vec<FileDescriptor> {
    let mut wanted: BTreeSet<String> = BTreeSet::new();
    let mut stack: Vec<FileDescriptor> = roots
        .iter()
        .filter_map(|r| pool.get_file_by_name(r))
        .collect();
    while let Some(f) = stack.pop() {
        if wanted.insert(f.name().to_string()) {
            stack.extend(f.dependencies());
        }
    }
    // The pool lists files dependencies first.
    pool.files().filter(|f| wanted.contains(f.name())).collect()
}

/// A `FileDescriptorSet` of `files`, encoded through prost-reflect so that
/// custom options survive.
pub fn encode_set(files: &[FileDescriptor]) -> Bytes {
    let mut buf = Vec::new();
    for f in files {
        prost::encoding::bytes::encode(1, &f.encode_to_vec(), &mut buf);
    }
    buf.into()
}

/// Encodes many overlapping closures (a batch's versions share most of
/// their imports): each file is encoded once, then copied into each set.
#[derive(Default)]
pub struct SetEncoder {
    files: std::sync::Mutex<HashMap<String, Bytes>>,
}

impl SetEncoder {
    /// The same bytes as [`encode_set`].
    pub fn encode(&self, files: &[FileDescriptor]) -> Bytes {
        let mut buf = Vec::new();
        for f in files {
            let known = self.files.lock().unwrap().get(f.name()).cloned();
            let bytes = known.unwrap_or_else(|| {
                let b = Bytes::from(f.encode_to_vec());
                self.files
                    .lock()
                    .unwrap()
                    .insert(f.name().to_string(), b.clone());
                b
            });
            prost::encoding::bytes::encode(1, &bytes, &mut buf);
        }
        buf.into()
    }
}

/// The fully-qualified names a file defines at package or message scope
/// that no other file may define: messages, enums, enum values (which are
/// scoped like their enum's siblings), services and extensions.
pub fn symbols(file: &FileDescriptor) -> Vec<String> {
    fn message(m: &MessageDescriptor, out: &mut Vec<String>) {
        if m.is_map_entry() {
            return;
        }
        out.push(m.full_name().to_string());
        for nested in m.child_messages() {
            message(&nested, out);
        }
        for e in m.child_enums() {
            enumeration(&e, out);
        }
        out.extend(m.child_extensions().map(|x| x.full_name().to_string()));
    }
    fn enumeration(e: &prost_reflect::EnumDescriptor, out: &mut Vec<String>) {
        out.push(e.full_name().to_string());
        let scope = e
            .full_name()
            .rsplit_once('.')
            .map(|(s, _)| format!("{s}."))
            .unwrap_or_default();
        out.extend(e.values().map(|v| format!("{scope}{}", v.name())));
    }
    let mut out = Vec::new();
    for m in file.messages() {
        message(&m, &mut out);
    }
    for e in file.enums() {
        enumeration(&e, &mut out);
    }
    out.extend(file.services().map(|s| s.full_name().to_string()));
    out.extend(file.extensions().map(|x| x.full_name().to_string()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiler_version_matches_the_locked_protox() {
        let lock = include_str!("../../Cargo.lock");
        let version = COMPILER_VERSION.strip_prefix("protox ").unwrap();
        assert!(
            lock.contains(&format!("name = \"protox\"\nversion = \"{version}\"")),
            "update COMPILER_VERSION to the protox in Cargo.lock"
        );
    }

    #[test]
    fn errors_carry_file_line_column() {
        let err = File::from_source(
            "a/b.proto",
            "syntax = \"proto3\";\nmessage A {\n  int32 x = ;\n}\n",
        )
        .unwrap_err();
        let text = describe(&err);
        assert!(text.starts_with("a/b.proto:3:"), "{text}");
    }
}
