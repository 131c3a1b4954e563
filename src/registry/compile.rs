//! Compiling with protox: gather the import closure asynchronously (each
//! file fetched and parsed once, only the files imports reach, a stored
//! version's whole recorded closure at once), then compile from memory,
//! guarded (see [`super::guard`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use prost_reflect::{DescriptorPool, FileDescriptor};
use prost_types::{DescriptorProto, EnumDescriptorProto, FileDescriptorProto};
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};

use super::guard::{self, Budget};
use super::view::{Owner, View};
use crate::error::{Error, Result};
use crate::model::VersionDep;

/// Recorded with every version; descriptors are reused on restore only when
/// it matches (a test keeps it equal to the locked protox version).
pub const COMPILER_VERSION: &str = "protox 0.10.0";

/// Imports looked up (and fetched) at once while gathering.
const FETCH_CONCURRENCY: usize = 32;

/// Where a file of a compile came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A file being published, by the index of its batch member.
    Own(usize),
    /// The namespace's staged-or-current tree.
    Namespace(Owner),
    /// An ancestor's current tree (a parent namespace, or `__builtins__`
    /// at the end of every chain): the namespace, and the owner there.
    Ancestor(String, Owner),
}

/// The sources of one compile, by import path. Compiling hands each file
/// to the compiler (`None` afterwards).
#[derive(Default)]
pub struct Sources {
    pub files: HashMap<String, (Option<Pending>, Origin)>,
}

/// A file waiting for the compiler: its text, parsed (once more) when the
/// compiler opens it, and its imports. Holding every parsed tree of a
/// corpus load until its compile held several times the sources.
pub struct Pending {
    text: Arc<str>,
    imports: Vec<String>,
}

impl Pending {
    fn parse(path: &str, text: Arc<str>) -> Result<Pending> {
        let imports = parse(path, &text)?
            .file_descriptor_proto()
            .dependency
            .clone();
        Ok(Pending { text, imports })
    }
}

/// One compiled file: its `FileDescriptorProto` encoded as prost-reflect
/// encodes it (custom options kept), its package and its imports.
pub struct CompiledFile {
    pub encoded: Bytes,
    pub package: String,
    pub dependencies: Vec<String>,
}

/// What a compile produced, by file name: every file compiled or imported
/// (well-known types included), encoded. Each version's set is assembled
/// from these bytes, so no descriptor pool outlives its compile batch.
#[derive(Default)]
pub struct Compiled {
    files: HashMap<String, CompiledFile>,
}

impl Compiled {
    pub fn get(&self, name: &str) -> Option<&CompiledFile> {
        self.files.get(name)
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Adds a file of a compile's pool (kept when known already).
    pub fn insert_from(&mut self, f: &FileDescriptor) {
        self.insert_with_info(f, &[]);
    }

    /// Adds a file of a pool that was given it without its source info,
    /// with `info` (its encoded `source_code_info` field) put back.
    pub fn insert_with_info(&mut self, f: &FileDescriptor, info: &[u8]) {
        if self.files.contains_key(f.name()) {
            return;
        }
        self.files.insert(
            f.name().to_string(),
            CompiledFile {
                encoded: Bytes::from(with_source_info(f.encode_to_vec(), info)),
                package: f.package_name().to_string(),
                dependencies: f.dependencies().map(|d| d.name().to_string()).collect(),
            },
        );
    }

    /// The file's descriptor, decoded (this process encoded it) without
    /// its source info: a dense file's locations decoded cost more than
    /// the rest of its descriptor, and the names are all that is read.
    pub fn proto(&self, name: &str) -> Option<FileDescriptorProto> {
        use prost::Message;
        FileDescriptorProto::decode(without_source_info(&self.files.get(name)?.encoded)).ok()
    }

    /// `roots` and everything they import, dependencies first, like
    /// [`closure`] over a pool: the same names in the same order.
    pub fn closure(&self, roots: &[String]) -> Vec<String> {
        self.closure_except(roots, &HashSet::new())
    }

    /// The compiled files of `imports`' closure that are not in `except`,
    /// dependencies first (to open in a new batch's compiler).
    pub fn closure_missing(&self, imports: &[String], except: &HashSet<String>) -> Vec<String> {
        self.closure_except(imports, except)
    }

    fn closure_except(&self, roots: &[String], except: &HashSet<String>) -> Vec<String> {
        let mut out = Vec::new();
        let mut done: HashSet<&str> = except.iter().map(String::as_str).collect();
        for root in roots {
            let Some((name, file)) = self.files.get_key_value(root.as_str()) else {
                continue;
            };
            if !done.insert(name) {
                continue;
            }
            let mut stack = vec![(name.as_str(), &file.dependencies, 0usize)];
            while let Some((name, deps, at)) = stack.last_mut() {
                if let Some(dep) = deps.get(*at) {
                    *at += 1;
                    if let Some((dep, f)) = self.files.get_key_value(dep.as_str())
                        && done.insert(dep)
                    {
                        stack.push((dep.as_str(), &f.dependencies, 0));
                    }
                } else {
                    out.push(name.to_string());
                    stack.pop();
                }
            }
        }
        out
    }

    /// The `FileDescriptorSet` of `names` (as [`Compiled::closure`] gives
    /// them): the same bytes as [`encode_set`] of their pool's files.
    pub fn encode_set(&self, names: &[String]) -> Bytes {
        let mut buf = Vec::new();
        for f in names.iter().filter_map(|n| self.files.get(n)) {
            prost::encoding::bytes::encode(1, &f.encoded, &mut buf);
        }
        buf.into()
    }
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

pub(super) fn compile_error(e: &protox::Error) -> Error {
    Error::Compile(describe(e))
}

/// Parses one source, after the nesting check that keeps every recursive
/// layer bounded.
fn parse(path: &str, source: &str) -> Result<File> {
    guard::check_nesting(path, source)?;
    File::from_source(path, source).map_err(|e| compile_error(&e))
}

/// A file found for an import: parsed (a file fetched ahead of need that
/// does not parse fails only if it is imported), and the dependencies its
/// version recorded, which name the rest of its closure.
struct Fetched {
    file: Result<Pending>,
    origin: Origin,
    deps: Vec<VersionDep>,
}

impl Sources {
    /// Parses the files being published, on every core (a corpus load
    /// parses thousands). `own`: (member index, path, source). The first
    /// file in `own` order that fails is the error reported.
    pub fn new(own: Vec<(usize, String, Arc<str>)>) -> Result<Self> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let chunk = own.len().div_ceil(threads).max(64);
        // Parsed for their imports (and errors); the trees are dropped.
        let parsed: Vec<Result<Vec<String>>> = std::thread::scope(|scope| {
            let workers: Vec<_> = own
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .map(|(_, path, source)| {
                                parse(path, source)
                                    .map(|f| f.file_descriptor_proto().dependency.clone())
                            })
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
        for ((member, path, text), imports) in own.into_iter().zip(parsed) {
            let pending = Pending {
                text,
                imports: imports?,
            };
            files.insert(path, (Some(pending), Origin::Own(member)));
        }
        Ok(Sources { files })
    }

    /// Adds a file from elsewhere (a recorded dependency).
    pub fn add(&mut self, path: &str, source: &str, origin: Origin) -> Result<()> {
        self.files.insert(
            path.to_string(),
            (Some(Pending::parse(path, source.into())?), origin),
        );
        Ok(())
    }

    /// Fetches every import the files reach that they do not define
    /// themselves: from `namespace`, then its `ancestors` (parent chain,
    /// then builtins) in order; well-known types are
    /// left to protox. A missing import is left for the compiler to report
    /// with its location.
    ///
    /// Imports are looked up in rounds, many at once. When an import
    /// resolves to a stored version, the dependencies that version recorded
    /// (its whole closure outside its own schema) are fetched in the next
    /// round, each from the schema that defined it then if that schema's
    /// version in this view still defines it (one owner per path); so a
    /// stored chain of any depth costs a few rounds, not one per level.
    /// Anything the recorded deps do not cover, or cover wrongly, is still
    /// looked up when an import reaches it.
    pub async fn gather(&mut self, namespace: &View, ancestors: &[Arc<View>]) -> Result<()> {
        let mut seen: HashSet<String> = self.files.keys().cloned().collect();
        let mut wanted: Vec<String> = Vec::new();
        for file in self.files.values().filter_map(|(f, _)| f.as_ref()) {
            wanted.extend(
                file.imports
                    .iter()
                    .filter(|d| seen.insert((*d).clone()))
                    .cloned(),
            );
        }
        // Fetched ahead of need (from recorded deps), by path.
        let mut spare: HashMap<String, Fetched> = HashMap::new();
        // Path → the schema that defined it when a version recorded it.
        let mut hints: HashMap<String, String> = HashMap::new();
        let mut ahead: Vec<String> = Vec::new();
        loop {
            let mut required = Vec::new();
            while let Some(path) = wanted.pop() {
                match spare.remove(&path) {
                    Some(found) => self.accept(
                        path,
                        found,
                        namespace,
                        &mut seen,
                        &mut wanted,
                        &mut hints,
                        &mut ahead,
                    )?,
                    None => required.push(path),
                }
            }
            ahead.retain(|p| !seen.contains(p));
            if required.is_empty() && ahead.is_empty() {
                return Ok(());
            }
            let jobs = required
                .into_iter()
                .map(|p| (p, true))
                .chain(ahead.drain(..).map(|p| (p, false)));
            let hints_now = &hints;
            let found: Vec<(String, bool, Option<Fetched>)> = futures::stream::iter(jobs)
                .map(|(path, required)| async move {
                    let hint = hints_now.get(&path).map(String::as_str);
                    let found = if required {
                        fetch(&path, hint, namespace, ancestors).await?
                    } else {
                        fetch_hinted(&path, hint, namespace).await?
                    };
                    Ok::<_, Error>((path, required, found))
                })
                .buffer_unordered(FETCH_CONCURRENCY)
                .try_collect()
                .await?;
            for (path, required, found) in found {
                match (found, required) {
                    (Some(f), true) => self.accept(
                        path,
                        f,
                        namespace,
                        &mut seen,
                        &mut wanted,
                        &mut hints,
                        &mut ahead,
                    )?,
                    (Some(f), false) => {
                        spare.insert(path, f);
                    }
                    // Missing imports are the compiler's to report; a
                    // recorded dep that moved is looked up if imported.
                    (None, _) => {}
                }
            }
        }
    }

    /// Takes a fetched file into the compile: its imports become wanted,
    /// and the deps its version recorded are fetched ahead.
    #[allow(clippy::too_many_arguments)]
    fn accept(
        &mut self,
        path: String,
        found: Fetched,
        namespace: &View,
        seen: &mut HashSet<String>,
        wanted: &mut Vec<String>,
        hints: &mut HashMap<String, String>,
        ahead: &mut Vec<String>,
    ) -> Result<()> {
        let file = found.file?;
        wanted.extend(
            file.imports
                .iter()
                .filter(|d| seen.insert((*d).clone()))
                .cloned(),
        );
        for dep in found.deps {
            if dep.namespace_id == namespace.namespace
                && !seen.contains(&dep.path)
                && !hints.contains_key(&dep.path)
            {
                ahead.push(dep.path.clone());
                hints.insert(dep.path, dep.schema_id);
            }
        }
        self.files.insert(path, (Some(file), found.origin));
        Ok(())
    }

    /// The files `roots` reach, each after the files it imports (the order
    /// protox itself would add them in). An import cycle is refused here.
    fn order(&self, roots: &[String]) -> Result<Vec<String>> {
        let deps = |path: &str| -> Vec<String> {
            match self.files.get(path) {
                Some((Some(f), _)) => f
                    .imports
                    .iter()
                    .filter(|d| self.files.contains_key(*d))
                    .cloned()
                    .collect(),
                _ => Vec::new(),
            }
        };
        let mut out = Vec::new();
        let mut done: HashSet<String> = HashSet::new();
        for root in roots {
            if !self.files.contains_key(root) || done.contains(root) {
                continue;
            }
            let mut on_path: HashSet<String> = HashSet::from([root.clone()]);
            let mut stack: Vec<(String, Vec<String>, usize)> = vec![(root.clone(), deps(root), 0)];
            while let Some((path, next, at)) = stack.last_mut() {
                if let Some(dep) = next.get(*at).cloned() {
                    *at += 1;
                    if on_path.contains(&dep) {
                        let from = stack.iter().position(|(p, ..)| *p == dep).unwrap_or(0);
                        let mut cycle: Vec<&str> =
                            stack[from..].iter().map(|(p, ..)| p.as_str()).collect();
                        cycle.push(&dep);
                        return Err(Error::Compile(format!(
                            "{}: import cycle detected: {}",
                            stack.last().unwrap().0,
                            cycle.join(" -> ")
                        )));
                    }
                    if !done.contains(&dep) {
                        on_path.insert(dep.clone());
                        let d = deps(&dep);
                        stack.push((dep, d, 0));
                    }
                } else {
                    let path = std::mem::take(path);
                    stack.pop();
                    on_path.remove(&path);
                    done.insert(path.clone());
                    out.push(path);
                }
            }
        }
        Ok(out)
    }

    /// Compiles `roots` (with everything they import) on the compiler
    /// thread, giving each schema `timeout` of compile time: `members`
    /// names the batch members of `Origin::Own`, imported files are charged
    /// to the schema they come from. The parsed files move into the
    /// compiler; origins stay.
    pub async fn compile(
        &mut self,
        roots: Vec<String>,
        members: &[&str],
        timeout: Duration,
        progress: Option<&super::Progress>,
    ) -> Result<Compiled> {
        let order = self.order(&roots)?;
        let mut labels: Vec<String> = members.iter().map(|m| format!("schema {m:?}")).collect();
        let mut imported: HashMap<String, usize> = HashMap::new();
        let order: Vec<(String, usize)> = order
            .into_iter()
            .map(|path| {
                let label = match &self.files[&path].1 {
                    Origin::Own(i) => return (path, *i),
                    Origin::Namespace(o) => format!("imported schema {:?}", o.schema_id),
                    Origin::Ancestor(ns, o) if ns == crate::ids::BUILTINS => {
                        format!("imported builtin schema {:?}", o.schema_id)
                    }
                    Origin::Ancestor(ns, o) => {
                        format!("imported schema {:?} of namespace {ns:?}", o.schema_id)
                    }
                };
                let charge = *imported.entry(label.clone()).or_insert_with(|| {
                    labels.push(label);
                    labels.len() - 1
                });
                (path, charge)
            })
            .collect();
        let files: HashMap<String, Pending> = self
            .files
            .iter_mut()
            .filter_map(|(path, (f, _))| Some((path.clone(), f.take()?)))
            .collect();
        // Progress per schema: a member is compiled once its last own file
        // is (files come in dependency order, not grouped by member).
        let mut left: HashMap<usize, usize> = HashMap::new();
        for (_, charge) in &order {
            if *charge < members.len() {
                *left.entry(*charge).or_default() += 1;
            }
        }
        let total = left.len();
        let progress = progress.cloned();
        if let Some(p) = &progress {
            (p.0)(super::Step::Compiling { done: 0, total });
        }
        let mut done = 0;
        let on_compiled = move |charge: usize| {
            if let Some(n) = left.get_mut(&charge) {
                *n -= 1;
                if *n == 0 {
                    done += 1;
                    if let Some(p) = &progress {
                        (p.0)(super::Step::Compiling { done, total });
                    }
                }
            }
        };
        let imports: HashMap<String, Vec<String>> = files
            .iter()
            .map(|(path, f)| (path.clone(), f.imports.clone()))
            .collect();
        let statements: HashMap<String, u64> = files
            .iter()
            .map(|(path, f)| (path.clone(), super::limits::statements(f.text.as_bytes())))
            .collect();
        let compiled = Arc::new(Mutex::new(Compiled::default()));
        let budget = Budget::new(timeout, labels);
        let resolver = Resolver {
            files: Mutex::new(files),
            compiled: compiled.clone(),
            budget: budget.clone(),
        };
        guard::run(
            resolver,
            order,
            imports,
            statements,
            compiled.clone(),
            budget,
            on_compiled,
        )
        .await?;
        // Taken out: a compiler thread stopped by a timeout may still hold
        // its clone for a moment.
        let compiled = std::mem::take(&mut *compiled.lock().unwrap());
        Ok(compiled)
    }
}

/// Finds the file an import names: first from the schema a recorded dep
/// named (`hint`), then through the namespace's claims, then each
/// ancestor's (the nearest first: a parent chain, then builtins).
async fn fetch(
    path: &str,
    hint: Option<&str>,
    namespace: &View,
    ancestors: &[Arc<View>],
) -> Result<Option<Fetched>> {
    if let Some(found) = fetch_hinted(path, hint, namespace).await? {
        return Ok(Some(found));
    }
    // Found without a hint: what its version recorded is not known yet.
    if let Some(owner) = namespace.owner_of_import(path).await? {
        return Ok(Some(
            fetched(path, namespace, owner, Origin::Namespace, true).await?,
        ));
    }
    for a in ancestors {
        if let Some(owner) = a.owner_of_import(path).await? {
            let ns = a.namespace.clone();
            return Ok(Some(
                fetched(path, a, owner, |o| Origin::Ancestor(ns, o), false).await?,
            ));
        }
    }
    // Well-known types come from protox; anything else is reported missing
    // by the compiler, at the import that names it.
    Ok(None)
}

/// The file at `path` if the hinted schema's version in this view defines
/// it (then it is the owner: a path has one owner in a proposed tree). Its
/// own recorded deps are not read: it is in the closure of the version
/// whose deps named it, and whatever else it imports is looked up when an
/// import reaches it.
async fn fetch_hinted(path: &str, hint: Option<&str>, namespace: &View) -> Result<Option<Fetched>> {
    let Some(schema) = hint else {
        return Ok(None);
    };
    match namespace.owner_by_hint(path, schema).await? {
        Some(owner) => Ok(Some(
            fetched(path, namespace, owner, Origin::Namespace, false).await?,
        )),
        None => Ok(None),
    }
}

async fn fetched(
    path: &str,
    view: &View,
    owner: Owner,
    origin: impl FnOnce(Owner) -> Origin,
    with_deps: bool,
) -> Result<Fetched> {
    let file = Pending::parse(path, view.source(&owner).await?.into());
    let deps = if with_deps {
        view.deps(&owner.schema_id, owner.version).await?
    } else {
        Vec::new()
    };
    Ok(Fetched {
        file,
        origin: origin(owner),
        deps,
    })
}

/// Serves gathered files (parsed as they are opened), then files an
/// earlier batch compiled (decoded), then the well-known types. The
/// compiler opens each file once, so a file is handed over, not copied.
/// Nothing is served once the compile is cancelled.
struct Resolver {
    files: Mutex<HashMap<String, Pending>>,
    compiled: Arc<Mutex<Compiled>>,
    budget: Arc<Budget>,
}

impl FileResolver for Resolver {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        if self.budget.is_cancelled() {
            return Err(protox::Error::new(std::io::Error::other("compile stopped")));
        }
        let pending = self.files.lock().unwrap().remove(name);
        if let Some(file) = pending {
            return File::from_source(name, &file.text);
        }
        let earlier = self
            .compiled
            .lock()
            .unwrap()
            .get(name)
            .map(|f| f.encoded.clone());
        if let Some(encoded) = earlier {
            // Its stored bytes keep their source info; the pool needs none.
            return File::decode_file_descriptor_proto(without_source_info(&encoded))
                .map_err(|e| protox::Error::new(std::io::Error::other(e.to_string())));
        }
        let mut chain = ChainFileResolver::new();
        chain.add(GoogleFileResolver::new());
        chain.open_file(name)
    }
}

/// `FileDescriptorProto.source_code_info`.
const SOURCE_CODE_INFO: u32 = 9;

/// The top-level fields of an encoded message: (number, bytes of the whole
/// field, key included). None if it is not a well-formed message of
/// fields protobuf encoders write (no groups).
fn top_level_fields(buf: &[u8]) -> Option<Vec<(u32, std::ops::Range<usize>)>> {
    use prost::encoding::{WireType, decode_key, decode_varint};
    let mut rest = buf;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let start = buf.len() - rest.len();
        let (number, wire) = decode_key(&mut rest).ok()?;
        let skip = match wire {
            WireType::Varint => {
                decode_varint(&mut rest).ok()?;
                0
            }
            WireType::LengthDelimited => usize::try_from(decode_varint(&mut rest).ok()?).ok()?,
            WireType::ThirtyTwoBit => 4,
            WireType::SixtyFourBit => 8,
            WireType::StartGroup | WireType::EndGroup => return None,
        };
        rest = rest.get(skip..)?;
        out.push((number, start..buf.len() - rest.len()));
    }
    Some(out)
}

/// An encoded `FileDescriptorProto` without its source info (unchanged if
/// it has none, or cannot be read: the decoder will say what is wrong).
pub fn without_source_info(encoded: &[u8]) -> Bytes {
    let Some(fields) = top_level_fields(encoded) else {
        return Bytes::copy_from_slice(encoded);
    };
    let mut out = Vec::with_capacity(encoded.len());
    for (number, range) in fields {
        if number != SOURCE_CODE_INFO {
            out.extend_from_slice(&encoded[range]);
        }
    }
    out.into()
}

/// An encoded `FileDescriptorSet` with every file's source info left out
/// (what the compatibility checks build their pools from). A set that
/// does not decode is returned as it is, for the pool to refuse.
pub fn set_without_source_info(set: &Bytes) -> Bytes {
    use prost::Message;
    #[derive(Message)]
    struct RawSet {
        #[prost(bytes = "bytes", repeated, tag = "1")]
        file: Vec<Bytes>,
    }
    match RawSet::decode(set.clone()) {
        Ok(raw) => RawSet {
            file: raw.file.iter().map(|f| without_source_info(f)).collect(),
        }
        .encode_to_vec()
        .into(),
        Err(_) => set.clone(),
    }
}

/// Puts `info` (an encoded `source_code_info` field, key included) into an
/// encoded `FileDescriptorProto` that has none, where prost-reflect's
/// encoder writes it: after every field numbered below 12 (`syntax`), so
/// the bytes equal those of a pool that held the source info itself.
pub fn with_source_info(mut encoded: Vec<u8>, info: &[u8]) -> Vec<u8> {
    if info.is_empty() {
        return encoded;
    }
    let at = top_level_fields(&encoded)
        .and_then(|f| f.into_iter().find(|(n, _)| *n >= 12).map(|(_, r)| r.start))
        .unwrap_or(encoded.len());
    // In place: a dense file's descriptor and locations are tens of MB, and
    // a second buffer for the result was held next to both at the peak.
    encoded.reserve_exact(info.len());
    encoded.splice(at..at, info.iter().copied());
    encoded
}

/// `roots` and everything they import, dependencies first: each root's
/// imports depth-first in declaration order, then the root (the order
/// protox adds files in), so a version's set depends only on its closure.
pub fn closure(pool: &DescriptorPool, roots: &[String]) -> Vec<FileDescriptor> {
    let mut out = Vec::new();
    let mut done: HashSet<String> = HashSet::new();
    for root in roots.iter().filter_map(|r| pool.get_file_by_name(r)) {
        if !done.insert(root.name().to_string()) {
            continue;
        }
        let deps: Vec<FileDescriptor> = root.dependencies().collect();
        let mut stack = vec![(root, deps, 0usize)];
        while let Some((file, deps, at)) = stack.last_mut() {
            if let Some(dep) = deps.get(*at).cloned() {
                *at += 1;
                if done.insert(dep.name().to_string()) {
                    let next: Vec<FileDescriptor> = dep.dependencies().collect();
                    stack.push((dep, next, 0));
                }
            } else {
                out.push(file.clone());
                stack.pop();
            }
        }
    }
    out
}

/// The descriptor pool of a stored, hence untrusted, `FileDescriptorSet`;
/// damage is [`Error::Corrupt`] naming `what`. prost-reflect 0.16.5 panics
/// (an index past its file table) instead of returning its own error for a
/// file whose `syntax` it does not know (found by fuzzing), so such a set is
/// refused before the pool is built, from a decode that skips all else.
pub fn stored_pool(what: &str, bytes: Bytes) -> Result<DescriptorPool> {
    use prost::Message;
    #[derive(Message)]
    struct Files {
        #[prost(message, repeated, tag = "1")]
        file: Vec<Syntax>,
    }
    #[derive(Message)]
    struct Syntax {
        #[prost(string, optional, tag = "12")]
        syntax: Option<String>,
    }
    let corrupt = |reason: String| Error::Corrupt {
        key: what.to_string(),
        reason,
    };
    if let Ok(files) = Files::decode(bytes.clone()) {
        let unknown = files.file.iter().find_map(|f| match f.syntax.as_deref() {
            None | Some("proto2" | "proto3") => None,
            Some(other) => Some(other.to_string()),
        });
        if let Some(syntax) = unknown {
            return Err(corrupt(format!(
                "a file has syntax {syntax:?}, expected proto2 or proto3"
            )));
        }
    }
    let pool = DescriptorPool::decode(bytes).map_err(|e| corrupt(e.to_string()))?;
    // prost-reflect 0.16.5 accepts a map entry without its key or value
    // field, then panics when asked for them (found by the descriptors
    // fuzzer).
    if let Some(m) = pool
        .all_messages()
        .find(|m| m.is_map_entry() && (m.get_field(1).is_none() || m.get_field(2).is_none()))
    {
        return Err(corrupt(format!(
            "map entry {} lacks its key (1) or value (2) field",
            m.full_name()
        )));
    }
    // It also accepts names protoc never writes (a package with a leading
    // dot, say), then panics looking them up (also found by the fuzzer).
    if let Some(bad) = pool.file_descriptor_protos().find_map(bad_name) {
        return Err(corrupt(bad));
    }
    Ok(pool)
}

/// The first name in `file` that is not what protoc writes: a package of
/// dot-separated identifiers, identifiers everywhere else.
fn bad_name(file: &FileDescriptorProto) -> Option<String> {
    fn ident(s: &str) -> bool {
        let mut c = s.chars();
        c.next()
            .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
            && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
    }
    fn enums<'a>(e: &'a [EnumDescriptorProto], out: &mut Vec<&'a str>) {
        for e in e {
            out.push(e.name());
            out.extend(e.value.iter().map(|v| v.name()));
        }
    }
    fn message<'a>(m: &'a DescriptorProto, out: &mut Vec<&'a str>) {
        out.push(m.name());
        out.extend(m.field.iter().chain(&m.extension).map(|f| f.name()));
        out.extend(m.oneof_decl.iter().map(|o| o.name()));
        enums(&m.enum_type, out);
        m.nested_type.iter().for_each(|n| message(n, out));
    }
    let package = file.package();
    if !package.is_empty() && !package.split('.').all(ident) {
        return Some(format!(
            "file {:?} has an invalid package {package:?}",
            file.name()
        ));
    }
    let mut names = Vec::new();
    file.message_type
        .iter()
        .for_each(|m| message(m, &mut names));
    enums(&file.enum_type, &mut names);
    names.extend(file.extension.iter().map(|f| f.name()));
    for s in &file.service {
        names.push(s.name());
        names.extend(s.method.iter().map(|m| m.name()));
    }
    let bad = names.into_iter().find(|n| !ident(n))?;
    Some(format!(
        "file {:?} defines an invalid name {bad:?}",
        file.name()
    ))
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

/// The fully-qualified names a file defines at package or message scope
/// that no other file may define: messages, enums, enum values (which are
/// scoped like their enum's siblings), services and extensions. Read from
/// the unlinked descriptor, so a stored file's names need neither its
/// imports nor a descriptor pool.
pub fn symbols(file: &FileDescriptorProto) -> Vec<String> {
    fn message(scope: &str, m: &DescriptorProto, out: &mut Vec<String>) {
        if m.options.as_ref().is_some_and(|o| o.map_entry()) {
            return;
        }
        let name = format!("{scope}{}", m.name());
        let inner = format!("{name}.");
        out.push(name);
        for nested in &m.nested_type {
            message(&inner, nested, out);
        }
        for e in &m.enum_type {
            enumeration(&inner, e, out);
        }
        out.extend(m.extension.iter().map(|x| format!("{inner}{}", x.name())));
    }
    // Enum values are scoped like their enum, not inside it.
    fn enumeration(scope: &str, e: &EnumDescriptorProto, out: &mut Vec<String>) {
        out.push(format!("{scope}{}", e.name()));
        out.extend(e.value.iter().map(|v| format!("{scope}{}", v.name())));
    }
    let scope = match file.package() {
        "" => String::new(),
        p => format!("{p}."),
    };
    let mut out = Vec::new();
    for m in &file.message_type {
        message(&scope, m, &mut out);
    }
    for e in &file.enum_type {
        enumeration(&scope, e, &mut out);
    }
    out.extend(file.service.iter().map(|s| format!("{scope}{}", s.name())));
    out.extend(
        file.extension
            .iter()
            .map(|x| format!("{scope}{}", x.name())),
    );
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
    fn source_info_is_taken_out_and_put_back_byte_for_byte() {
        use prost::Message;
        let file = File::from_source(
            "a/b.proto",
            "syntax = \"proto3\";\npackage a;\n// A comment.\nmessage A {\n  int32 x = 1;\n}\n",
        )
        .unwrap();
        let full = file.file_descriptor_proto().clone();
        assert!(full.source_code_info.is_some() && full.syntax.is_some());
        let encoded = full.encode_to_vec();
        let bare = FileDescriptorProto {
            source_code_info: None,
            ..full.clone()
        };
        let stripped = without_source_info(&encoded);
        assert_eq!(stripped, bare.encode_to_vec());
        let mut info = Vec::new();
        prost::encoding::message::encode(
            SOURCE_CODE_INFO,
            full.source_code_info.as_ref().unwrap(),
            &mut info,
        );
        assert_eq!(with_source_info(stripped.to_vec(), &info), encoded);
        // Without `syntax`, at the end; with no info, unchanged.
        let proto2 = FileDescriptorProto {
            syntax: None,
            ..full.clone()
        };
        let stripped = without_source_info(&proto2.encode_to_vec());
        assert_eq!(
            with_source_info(stripped.to_vec(), &info),
            proto2.encode_to_vec()
        );
        assert_eq!(with_source_info(stripped.to_vec(), &[]), stripped.to_vec());
        // Not a message: left for the decoder to refuse.
        assert_eq!(&without_source_info(&[0xff])[..], &[0xff]);
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

    #[test]
    fn a_stored_set_with_an_unknown_syntax_is_damage_not_a_panic() {
        use prost::Message;
        let set = prost_types::FileDescriptorSet {
            file: vec![FileDescriptorProto {
                name: Some("a.proto".into()),
                syntax: Some("proto4".into()),
                ..Default::default()
            }],
        };
        let err = stored_pool("ns/a version 1", set.encode_to_vec().into()).unwrap_err();
        assert!(
            matches!(&err, Error::Corrupt { key, reason } if key == "ns/a version 1" && reason.contains("proto4")),
            "{err}"
        );
        let ok = prost_types::FileDescriptorSet {
            file: vec![FileDescriptorProto {
                name: Some("a.proto".into()),
                syntax: Some("proto3".into()),
                ..Default::default()
            }],
        };
        assert!(stored_pool("ok", ok.encode_to_vec().into()).is_ok());
    }
}
