//! Running protox so that no input can abort the process or run unbounded:
//!
//! - sources nesting braces, brackets, parentheses or angle brackets deeper
//!   than [`MAX_NESTING`] are refused before they are parsed (the parser,
//!   the option text-format parser, descriptor encoding and dropping all
//!   recurse per level);
//! - files are compiled one at a time, dependencies first, so protox never
//!   recurses along an import chain, however deep;
//! - the compiler runs on its own thread, whose stack is sized for those
//!   limits;
//! - every schema gets [`Limits::compile_timeout`](super::Limits) of compile
//!   time: when one schema's files take longer, the compile stops at the
//!   next file and fails with [`Error::CompileTimeout`], a resource limit,
//!   not bad input.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::collections::{HashMap, HashSet};

use protox::file::FileResolver;

use super::compile::Compiled;

use crate::error::{Error, Result};

/// The deepest nesting of `{`, `[`, `(` and `<` a source may have. protoc
/// allows messages 31 deep; 64 leaves room for options and aggregate values
/// inside them, and keeps every recursive layer (parsing, option values,
/// prost's decoding with its limit of 100) far from its bounds.
pub const MAX_NESTING: usize = 64;

/// The compiler thread's stack. With nesting bounded and imports compiled
/// iteratively, protox needs well under 2 MiB even in a debug build (a test
/// compiles the deepest allowed file on a 2 MiB stack); this leaves ample
/// room. Only the pages touched are ever committed.
const STACK_BYTES: usize = 16 << 20;

/// Refuses `source` when it nests deeper than [`MAX_NESTING`], naming the
/// line and column where the limit is crossed. Strings and comments are
/// skipped; an unterminated one is left for the parser to report.
pub fn check_nesting(path: &str, source: &str) -> Result<()> {
    let bytes = source.as_bytes();
    let (mut depth, mut line, mut line_start, mut i) = (0usize, 1usize, 0usize, 0usize);
    while i < bytes.len() {
        match bytes[i] {
            b'\n' => {
                line += 1;
                line_start = i + 1;
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < bytes.len() && !(bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/')) {
                    if bytes[i] == b'\n' {
                        line += 1;
                        line_start = i + 1;
                    }
                    i += 1;
                }
                i += 2;
                continue;
            }
            quote @ (b'"' | b'\'') => {
                i += 1;
                while i < bytes.len() && bytes[i] != quote && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'{' | b'[' | b'(' | b'<' => {
                depth += 1;
                if depth > MAX_NESTING {
                    let column = source[line_start..i].chars().count() + 1;
                    return Err(Error::Compile(format!(
                        "{path}:{line}:{column}: nested more than {MAX_NESTING} levels deep \
                         (braces, brackets, parentheses and angle brackets); protoshelf refuses \
                         deeper sources before parsing them: flatten the definition"
                    )));
                }
            }
            b'}' | b']' | b')' | b'>' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// Compile time per schema, shared by the compiler thread and the watchdog
/// on the async side.
pub struct Budget {
    limit: Duration,
    /// What each charge is, for the error: `schema "x"` or `imported schema "y"`.
    labels: Vec<String>,
    state: Mutex<Spent>,
    cancelled: AtomicBool,
}

#[derive(Default)]
struct Spent {
    per_charge: Vec<Duration>,
    /// The file being compiled: its charge and when it started.
    current: Option<(usize, Instant)>,
    /// Files the compiler started.
    opened: usize,
    /// The compiler thread returned.
    finished: bool,
}

impl Budget {
    pub fn new(limit: Duration, labels: Vec<String>) -> Arc<Self> {
        Arc::new(Budget {
            limit,
            state: Mutex::new(Spent {
                per_charge: vec![Duration::ZERO; labels.len()],
                ..Spent::default()
            }),
            labels,
            cancelled: AtomicBool::new(false),
        })
    }

    fn exceeded(&self, charge: usize) -> Error {
        self.cancelled.store(true, Relaxed);
        Error::CompileTimeout {
            what: self.labels[charge].clone(),
            limit: self.limit,
        }
    }

    fn begin(&self, charge: usize) -> Result<(), ()> {
        if self.cancelled.load(Relaxed) {
            return Err(());
        }
        let mut s = self.state.lock().unwrap();
        s.current = Some((charge, Instant::now()));
        s.opened += 1;
        Ok(())
    }

    fn end(&self) -> Result<()> {
        let mut s = self.state.lock().unwrap();
        if let Some((charge, start)) = s.current.take() {
            s.per_charge[charge] += start.elapsed();
            if s.per_charge[charge] >= self.limit {
                return Err(self.exceeded(charge));
            }
        }
        Ok(())
    }

    /// When the file being compiled would exhaust its schema's budget.
    fn deadline(&self) -> Instant {
        let s = self.state.lock().unwrap();
        match s.current {
            Some((charge, start)) => start + self.limit.saturating_sub(s.per_charge[charge]),
            None => Instant::now() + self.limit.max(Duration::from_millis(10)),
        }
    }

    /// The timeout, when the file being compiled has exhausted its budget.
    fn expired(&self) -> Option<Error> {
        let s = self.state.lock().unwrap();
        let (charge, start) = s.current?;
        (s.per_charge[charge] + start.elapsed() >= self.limit).then(|| self.exceeded(charge))
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Relaxed)
    }

    /// (files the compiler started, whether its thread has returned).
    pub fn progress(&self) -> (usize, bool) {
        let s = self.state.lock().unwrap();
        (s.opened, s.finished)
    }
}

/// Files compiled in one compiler before its descriptors are encoded into
/// the [`Compiled`] map and the compiler is dropped: a pool holds several
/// times its sources, so a corpus load compiled in one pool held most of
/// its memory there (1.5 GB for googleapis).
pub const BATCH_FILES: usize = 256;

/// Statements (`;`) one batch's compiler may hold before the next file
/// starts a new batch: a pool costs about 1.2 KB per declaration, so a few
/// dense files share no pool (a batch of one file holds all of it).
pub const BATCH_STATEMENTS: u64 = 50_000;

/// Shares one resolver between the compilers of successive batches, and
/// hands the compiler each parsed file without its source info: the pool
/// keeps three copies of every descriptor it is given (most of a dense
/// file's memory was their locations), while only the encoded output
/// needs the locations. They are kept encoded and put back by [`harvest`];
/// the text is kept until the file compiles, so that a failure can be
/// compiled again with them, for its `file:line:column`.
struct Shared<R> {
    inner: Arc<R>,
    set_aside: Arc<SetAside>,
}

#[derive(Default)]
struct SetAside {
    /// File → its encoded `source_code_info` field, until harvested.
    info: Mutex<HashMap<String, Vec<u8>>>,
    /// File → its text, until it compiled.
    text: Mutex<HashMap<String, String>>,
    /// The file served whole (source info and text), to locate its error.
    whole: Mutex<Option<String>>,
}

impl<R> Shared<R> {
    fn new(inner: &Arc<R>, set_aside: &Arc<SetAside>) -> Self {
        Shared {
            inner: inner.clone(),
            set_aside: set_aside.clone(),
        }
    }
}

impl<R: FileResolver> FileResolver for Shared<R> {
    fn open_file(&self, name: &str) -> Result<protox::file::File, protox::Error> {
        let aside = &self.set_aside;
        if aside.whole.lock().unwrap().as_deref() == Some(name)
            && let Some(text) = aside.text.lock().unwrap().get(name)
        {
            return protox::file::File::from_source(name, text);
        }
        let file = self.inner.open_file(name)?;
        // Files given as descriptors (earlier batches, well-known types)
        // pass as they are.
        let Some(text) = file.source().map(str::to_string) else {
            return Ok(file);
        };
        let mut proto = prost_types::FileDescriptorProto::from(file);
        if let Some(info) = proto.source_code_info.take() {
            let mut encoded = Vec::new();
            prost::encoding::message::encode(9, &info, &mut encoded);
            drop(info);
            aside.info.lock().unwrap().insert(name.to_string(), encoded);
        }
        aside.text.lock().unwrap().insert(name.to_string(), text);
        Ok(protox::file::File::from_file_descriptor_proto(proto))
    }
}

/// Compiles `order` (every file after the files it imports, each with the
/// budget it is charged to) on the compiler thread, within the budget, in
/// batches of at most [`BATCH_FILES`] files and, but for a batch's first
/// file, [`BATCH_STATEMENTS`] statements (`statements`, by file, imports
/// decoded into the batch included): each batch's files are encoded into
/// `compiled` and its pool dropped. A later batch's imports of files in
/// `compiled` reach the resolver, which serves them decoded from there;
/// `imports` (each pending file's imports) lets those be opened
/// dependencies first, so protox never recurses along an import chain.
/// On a timeout the error returns at once; the thread stops before its
/// next file (one file's compile cannot be interrupted) and drops its work.
pub async fn run<R>(
    resolver: R,
    order: Vec<(String, usize)>,
    imports: HashMap<String, Vec<String>>,
    statements: HashMap<String, u64>,
    compiled: Arc<Mutex<Compiled>>,
    budget: Arc<Budget>,
    on_compiled: impl FnMut(usize) + Send + 'static,
) -> Result<()>
where
    R: FileResolver + Send + Sync + 'static,
{
    let (tx, mut rx) = tokio::sync::oneshot::channel();
    let b = budget.clone();
    std::thread::Builder::new()
        .name("protoshelf-compile".into())
        .stack_size(STACK_BYTES)
        .spawn(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                compile_in_order(
                    Arc::new(resolver),
                    &order,
                    &imports,
                    &statements,
                    &compiled,
                    &b,
                    on_compiled,
                )
            }));
            b.state.lock().unwrap().finished = true;
            let _ = tx.send(result);
        })
        .map_err(|e| Error::Compile(format!("cannot start the compiler thread: {e}")))?;
    loop {
        let deadline = budget.deadline();
        tokio::select! {
            done = &mut rx => return match done {
                Ok(Ok(result)) => result,
                Ok(Err(_)) | Err(_) => Err(Error::Compile("the compiler crashed".into())),
            },
            _ = tokio::time::sleep_until(deadline.into()) => {
                if let Some(e) = budget.expired() {
                    return Err(e);
                }
            }
        }
    }
}

fn compiler<R: FileResolver + Send + Sync + 'static>(
    resolver: &Arc<R>,
    set_aside: &Arc<SetAside>,
) -> protox::Compiler {
    let mut compiler = protox::Compiler::with_file_resolver(Shared::new(resolver, set_aside));
    compiler.include_imports(true).include_source_info(true);
    compiler
}

/// Moves every file of `compiler`'s pool that `compiled` lacks into it,
/// encoded with the source info set aside for it.
fn harvest(compiler: &protox::Compiler, compiled: &Mutex<Compiled>, set_aside: &SetAside) {
    let pool = compiler.descriptor_pool();
    let mut compiled = compiled.lock().unwrap();
    let mut info = set_aside.info.lock().unwrap();
    for f in pool.files() {
        let aside = info.remove(f.name()).unwrap_or_default();
        compiled.insert_with_info(&f, &aside);
    }
}

/// The error of `name` with its location: `name` compiled again, whole,
/// in a compiler of its own over what compiled before it. `original` if
/// that compiles (it cannot: the same input gives the same error).
fn located<R: FileResolver + Send + Sync + 'static>(
    resolver: &Arc<R>,
    set_aside: &Arc<SetAside>,
    name: &str,
    imports: &HashMap<String, Vec<String>>,
    compiled: &Mutex<Compiled>,
    original: protox::Error,
) -> Error {
    if !set_aside.text.lock().unwrap().contains_key(name) {
        return super::compile::compile_error(&original);
    }
    *set_aside.whole.lock().unwrap() = Some(name.to_string());
    let mut again = compiler(resolver, set_aside);
    let deps = compiled.lock().unwrap().closure_missing(
        imports.get(name).map_or(&[][..], Vec::as_slice),
        &HashSet::new(),
    );
    let result = deps
        .iter()
        .try_for_each(|dep| again.open_file(dep).map(|_| ()))
        .and_then(|()| again.open_file(name).map(|_| ()));
    *set_aside.whole.lock().unwrap() = None;
    match result {
        Err(e) => super::compile::compile_error(&e),
        Ok(()) => super::compile::compile_error(&original),
    }
}

fn compile_in_order<R: FileResolver + Send + Sync + 'static>(
    resolver: Arc<R>,
    order: &[(String, usize)],
    imports: &HashMap<String, Vec<String>>,
    statements: &HashMap<String, u64>,
    compiled: &Mutex<Compiled>,
    budget: &Budget,
    mut on_compiled: impl FnMut(usize),
) -> Result<()> {
    let stopped = || Err(Error::Compile("compile stopped".into()));
    let set_aside = Arc::new(SetAside::default());
    let mut current = compiler(&resolver, &set_aside);
    // Files the current compiler holds, files of `order` among them, and
    // their statements.
    let mut here: HashSet<String> = HashSet::new();
    let (mut batch_files, mut batch_statements) = (0usize, 0u64);
    let weight = |name: &str| statements.get(name).copied().unwrap_or(0);
    for (name, charge) in order {
        if batch_files >= BATCH_FILES
            || (batch_files > 0 && batch_statements + weight(name) > BATCH_STATEMENTS)
        {
            harvest(&current, compiled, &set_aside);
            current = compiler(&resolver, &set_aside);
            here.clear();
            (batch_files, batch_statements) = (0, 0);
        }
        // Imports compiled in an earlier batch: opened first, each after
        // its own imports (iteratively), decoded from `compiled`.
        let earlier = compiled
            .lock()
            .unwrap()
            .closure_missing(imports.get(name).map_or(&[][..], Vec::as_slice), &here);
        for dep in earlier {
            current
                .open_file(&dep)
                .map_err(|e| super::compile::compile_error(&e))?;
            batch_statements += weight(&dep);
            here.insert(dep);
        }
        if budget.begin(*charge).is_err() {
            return stopped();
        }
        // Every file this one imports is compiled already: protox only
        // looks them up, and recurses at most into well-known types.
        let opened = current.open_file(name);
        budget.end()?;
        if budget.is_cancelled() {
            return stopped();
        }
        if let Err(e) = opened {
            harvest(&current, compiled, &set_aside);
            drop(current);
            return Err(located(&resolver, &set_aside, name, imports, compiled, e));
        }
        set_aside.text.lock().unwrap().clear();
        here.insert(name.clone());
        batch_files += 1;
        batch_statements += weight(name);
        on_compiled(*charge);
    }
    harvest(&current, compiled, &set_aside);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use protox::file::File;
    use std::collections::HashMap;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn nesting_is_counted_outside_strings_and_comments() {
        let deep = |n: usize| format!("{}{}", "{".repeat(n), "}".repeat(n));
        assert!(check_nesting("a.proto", &deep(MAX_NESTING)).is_ok());
        let err = check_nesting("a.proto", &format!("x\n  {}", deep(MAX_NESTING + 1)))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("a.proto:2:{}:", MAX_NESTING + 3)) && err.contains("64"),
            "{err}"
        );
        let hidden = "{".repeat(100);
        for text in [
            format!("// {hidden}\n"),
            format!("/* {hidden}\n{hidden} */"),
            format!("option x = \"{hidden}\\\"{hidden}\";"),
            format!("option x = '{hidden}';"),
        ] {
            assert!(check_nesting("a.proto", &text).is_ok(), "{text}");
        }
    }

    /// A chain of `n` files, `f{k}` importing `f{k-1}`, each opened only
    /// after `delay`.
    struct Slow {
        files: Mutex<HashMap<String, File>>,
        delay: Duration,
        opened: Arc<AtomicUsize>,
    }

    impl FileResolver for Slow {
        fn open_file(&self, name: &str) -> Result<File, protox::Error> {
            std::thread::sleep(self.delay);
            self.opened.fetch_add(1, Relaxed);
            self.files
                .lock()
                .unwrap()
                .remove(name)
                .ok_or_else(|| protox::Error::file_not_found(name))
        }
    }

    fn chain(n: usize, delay: Duration) -> (Slow, Vec<String>) {
        let mut files = HashMap::new();
        let mut names = Vec::new();
        for k in 0..n {
            let name = format!("c/f{k}.proto");
            let import = if k == 0 {
                String::new()
            } else {
                format!("import \"c/f{}.proto\";\n", k - 1)
            };
            let text = format!("syntax = \"proto3\";\npackage c;\n{import}message M{k} {{}}\n");
            files.insert(name.clone(), File::from_source(&name, &text).unwrap());
            names.push(name);
        }
        let slow = Slow {
            files: Mutex::new(files),
            delay,
            opened: Arc::default(),
        };
        (slow, names)
    }

    #[tokio::test]
    async fn the_limit_is_per_schema_not_per_batch() {
        // 12 schemas of one file, each taking at least 100 ms: the batch
        // takes over 1.2 s in total, more than twice one schema's limit.
        let (slow, names) = chain(12, Duration::from_millis(100));
        let labels = (0..12).map(|k| format!("schema \"s{k}\"")).collect();
        let order = names.into_iter().enumerate().map(|(k, n)| (n, k)).collect();
        let budget = Budget::new(Duration::from_millis(500), labels);
        let compiled = Arc::new(Mutex::new(Compiled::default()));
        run(
            slow,
            order,
            HashMap::new(),
            HashMap::new(),
            compiled.clone(),
            budget.clone(),
            |_| {},
        )
        .await
        .unwrap();
        assert_eq!(compiled.lock().unwrap().len(), 12);
        assert_eq!(budget.progress(), (12, true));
    }

    #[tokio::test]
    async fn a_timeout_names_the_schema_and_stops_the_work() {
        // One schema of 100 files of at least 50 ms each, with 300 ms.
        let (slow, names) = chain(100, Duration::from_millis(50));
        let opened = slow.opened.clone();
        let order = names.into_iter().map(|n| (n, 0)).collect();
        let budget = Budget::new(Duration::from_millis(300), vec!["schema \"big\"".into()]);
        let compiled = Arc::new(Mutex::new(Compiled::default()));
        let err = run(
            slow,
            order,
            HashMap::new(),
            HashMap::new(),
            compiled,
            budget.clone(),
            |_| {},
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&err, Error::CompileTimeout { what, limit }
                if what == "schema \"big\"" && *limit == Duration::from_millis(300)),
            "{err:?}"
        );
        assert!(!err.is_user_error(), "a limit under load is not bad input");
        let text = err.to_string();
        assert!(
            text.contains("--compile-timeout") && text.contains("not an error in the files"),
            "{text}"
        );
        // The thread stops at its next file instead of compiling the rest.
        for _ in 0..200 {
            if budget.progress().1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (started, finished) = budget.progress();
        assert!(finished, "the compiler thread returned");
        let seen = opened.load(Relaxed);
        assert!(
            started < 100 && seen < 100,
            "stopped early: {started} {seen}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(opened.load(Relaxed), seen, "no work after stopping");
    }
}
