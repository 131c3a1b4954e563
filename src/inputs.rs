//! `.proto` files on the local disk: reading the trees `push`, `load` and
//! `check` publish, and writing a version's files (`schema source --out`).
//!
//! Both directions stay inside the directory they were given. Reading
//! refuses a symbolic link that resolves outside the root (unless the
//! caller follows links on purpose) without opening its target, so a
//! refused file's content never reaches an error message. Writing never
//! goes through a symbolic link: directories are created one at a time and
//! checked, and each file is written to a fresh name and renamed into place,
//! so a link (or hard link) already in the tree is never written through.

use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::registry::{Limits, SourceFile};

/// How a tree is read.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// Read symbolic links that resolve outside the root too.
    pub follow_symlinks: bool,
    /// Import roots (`push -I`): file and directory arguments are named by
    /// their path relative to the first that holds them.
    pub roots: Vec<PathBuf>,
}

fn input_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::InvalidInput(format!("{}: {e}", path.display()))
}

/// Reads one file, refusing it before reading when it is over the limit.
fn read(path: &Path, import_path: String) -> Result<SourceFile> {
    let limit = Limits::default().max_file_bytes as u64;
    let meta = fs::metadata(path).map_err(|e| input_error(path, e))?;
    if meta.len() > limit {
        return Err(Error::InvalidInput(format!(
            "{}: {} bytes; the limit per file is {limit} bytes",
            path.display(),
            meta.len()
        )));
    }
    let content = fs::read(path).map_err(|e| input_error(path, e))?;
    Ok(SourceFile::new(import_path, content))
}

fn is_proto(name: &Path) -> bool {
    name.extension().is_some_and(|e| e == "proto")
}

/// The root a tree is read under: links resolving outside it are refused.
struct Root {
    shown: PathBuf,
    canonical: PathBuf,
    follow: bool,
}

impl Root {
    fn new(dir: &Path, opts: &ReadOptions) -> Result<Root> {
        Ok(Root {
            shown: dir.to_path_buf(),
            canonical: dir.canonicalize().map_err(|e| input_error(dir, e))?,
            follow: opts.follow_symlinks,
        })
    }

    /// Checks a symbolic link found at `link` (before anything is read
    /// through it) and returns what it resolves to. A link to a file must
    /// lead to a `.proto` file: its content is never read otherwise.
    fn check_link(&self, link: &Path) -> Result<(PathBuf, fs::Metadata)> {
        let written = fs::read_link(link).map_err(|e| input_error(link, e))?;
        let resolved = link.canonicalize().map_err(|_| {
            Error::InvalidInput(format!(
                "{}: a symbolic link to {}, which does not exist",
                link.display(),
                written.display()
            ))
        })?;
        if !self.follow && !resolved.starts_with(&self.canonical) {
            return Err(Error::InvalidInput(format!(
                "{}: a symbolic link to {} (resolving to {}), outside {}; links may only point inside the tree given, pass --follow-symlinks to read it anyway",
                link.display(),
                written.display(),
                resolved.display(),
                self.shown.display()
            )));
        }
        let meta = fs::metadata(&resolved).map_err(|e| input_error(link, e))?;
        if meta.is_file() && !is_proto(&resolved) {
            return Err(Error::InvalidInput(format!(
                "{}: a symbolic link to {}, which is not a .proto file",
                link.display(),
                resolved.display()
            )));
        }
        Ok((resolved, meta))
    }
}

/// A depth-first walk in file-name order, collecting `.proto` files.
struct Walk<'a> {
    root: &'a Root,
    /// Canonical directories on the current path (a link back up is a loop).
    stack: Vec<PathBuf>,
    files: Vec<(PathBuf, String)>,
}

impl Walk<'_> {
    fn dir(&mut self, dir: &Path, import_prefix: &str) -> Result<()> {
        let canonical = dir.canonicalize().map_err(|e| input_error(dir, e))?;
        if self.stack.contains(&canonical) {
            return Err(Error::InvalidInput(format!(
                "{}: a symbolic link loop (it leads back to {})",
                dir.display(),
                canonical.display()
            )));
        }
        self.stack.push(canonical);
        let mut entries: Vec<_> = fs::read_dir(dir)
            .map_err(|e| input_error(dir, e))?
            .collect::<std::io::Result<_>>()
            .map_err(|e| input_error(dir, e))?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let import = if import_prefix.is_empty() {
                name
            } else {
                format!("{import_prefix}/{name}")
            };
            let meta = fs::symlink_metadata(&path).map_err(|e| input_error(&path, e))?;
            let meta = if meta.is_symlink() {
                // A link not named .proto matters only when it leads to a
                // directory (dangling links included: nothing to publish).
                let to_dir = fs::metadata(&path).is_ok_and(|m| m.is_dir());
                if !is_proto(&path) && !to_dir {
                    continue;
                }
                self.root.check_link(&path)?.1
            } else {
                meta
            };
            if meta.is_dir() {
                self.dir(&path, &import)?;
            } else if meta.is_file() && is_proto(&path) {
                self.files.push((path, import));
            }
        }
        self.stack.pop();
        Ok(())
    }
}

/// The `.proto` files under `dir`, named by their path relative to it
/// (`/`-separated), sorted. Symbolic links are followed while they resolve
/// inside `dir` (or anywhere with [`ReadOptions::follow_symlinks`]).
pub fn read_dir(dir: &Path, opts: &ReadOptions) -> Result<Vec<SourceFile>> {
    list_dir(dir, opts)?.iter().map(Listed::read).collect()
}

/// A `.proto` file found under a directory, not read yet.
#[derive(Debug, Clone)]
pub struct Listed {
    /// Where it is on disk.
    pub path: PathBuf,
    /// Its path relative to the directory listed: its import path.
    pub import: String,
}

impl Listed {
    pub fn read(&self) -> Result<SourceFile> {
        read(&self.path, self.import.clone())
    }
}

/// What [`read_dir`] would read, without reading it (symbolic links are
/// checked as it checks them): a caller can leave files out before they
/// are opened, and tell its progress while reading. An error when there
/// is no `.proto` file.
pub fn list_dir(dir: &Path, opts: &ReadOptions) -> Result<Vec<Listed>> {
    let root = Root::new(dir, opts)?;
    let mut walk = Walk {
        root: &root,
        stack: Vec::new(),
        files: Vec::new(),
    };
    walk.dir(dir, "")?;
    if walk.files.is_empty() {
        return Err(Error::InvalidInput(format!(
            "no .proto files under {}",
            dir.display()
        )));
    }
    Ok(walk
        .files
        .into_iter()
        .map(|(path, import)| Listed { path, import })
        .collect())
}

/// Which paths of a tree `load` publishes: `--include` and `--exclude`
/// globs on the path relative to the tree's root, where `*` stays within
/// one directory and `**` crosses them. A glob also matches every file
/// under a directory it matches (`--exclude vendor`).
#[derive(Debug, Clone, Default)]
pub struct PathFilter {
    include: Option<globset::GlobSet>,
    exclude: Option<globset::GlobSet>,
}

fn glob_set(flag: &str, globs: &[String]) -> Result<Option<globset::GlobSet>> {
    if globs.is_empty() {
        return Ok(None);
    }
    let mut set = globset::GlobSetBuilder::new();
    for g in globs {
        let glob = globset::GlobBuilder::new(g.trim_end_matches('/'))
            .literal_separator(true)
            .build()
            .map_err(|e| Error::InvalidInput(format!("{flag} {g:?}: {e}")))?;
        set.add(glob);
    }
    set.build()
        .map(Some)
        .map_err(|e| Error::InvalidInput(format!("{flag}: {e}")))
}

impl PathFilter {
    pub fn new(include: &[String], exclude: &[String]) -> Result<PathFilter> {
        Ok(PathFilter {
            include: glob_set("--include", include)?,
            exclude: glob_set("--exclude", exclude)?,
        })
    }

    /// Whether any filter was given.
    pub fn is_set(&self) -> bool {
        self.include.is_some() || self.exclude.is_some()
    }

    /// Whether `set` matches `path` or one of its parent directories.
    fn hits(set: &globset::GlobSet, path: &str) -> bool {
        let mut prefix = path;
        loop {
            if set.is_match(prefix) {
                return true;
            }
            match prefix.rsplit_once('/') {
                Some((parent, _)) => prefix = parent,
                None => return false,
            }
        }
    }

    /// Whether the file at `path` (relative to the root) is published.
    pub fn keeps(&self, path: &str) -> bool {
        self.include.as_ref().is_none_or(|s| Self::hits(s, path))
            && !self.exclude.as_ref().is_some_and(|s| Self::hits(s, path))
    }
}

/// Where a file or directory argument sits under an import root: the
/// root it was found under and its `/`-separated path relative to it.
fn under_root<'r>(path: &Path, roots: &'r [Root]) -> Result<Option<(&'r Root, String)>> {
    // The parent is resolved, not the file itself: a file argument that is
    // a link is named where it is (and its target checked like any link).
    let canonical = if path.is_dir() {
        path.canonicalize().map_err(|e| input_error(path, e))?
    } else {
        let parent = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let parent = parent.canonicalize().map_err(|e| input_error(path, e))?;
        parent.join(path.file_name().expect("a file has a name"))
    };
    for root in roots {
        if let Ok(rel) = canonical.strip_prefix(&root.canonical) {
            let rel: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            return Ok(Some((root, rel.join("/"))));
        }
    }
    Ok(None)
}

fn outside_roots(p: &str, roots: &[Root], given: bool) -> Error {
    let shown: Vec<String> = roots
        .iter()
        .map(|r| r.shown.display().to_string())
        .collect();
    let which = if given {
        format!(
            "the import root{} {}",
            if shown.len() == 1 { "" } else { "s" },
            shown.join(", ")
        )
    } else {
        "the current directory, the default import root".into()
    };
    Error::InvalidInput(format!(
        "{p}: outside {which}; files are stored at their path relative to an import root, which is their import path (as with protoc's -I): give -I/--root DIR naming the directory that imports are relative to"
    ))
}

/// Files and directories as `push` and `check` take them, named like
/// protoc names them. A file is named by its path relative to the first
/// import root (`opts.roots`, else the current directory) that holds it,
/// and refused when none does, so its import path never silently changes.
/// A directory contributes its `.proto` files at their paths relative to
/// the root holding it, or, with no root given, relative to the directory
/// itself. Symbolic links are checked against the root they were found
/// under.
pub fn collect(paths: &[String], opts: &ReadOptions) -> Result<Vec<SourceFile>> {
    let given = !opts.roots.is_empty();
    let roots: Vec<Root> = if given {
        opts.roots
            .iter()
            .map(|r| {
                if r.is_dir() {
                    Root::new(r, opts)
                } else {
                    Err(Error::InvalidInput(format!(
                        "-I/--root {}: not a directory",
                        r.display()
                    )))
                }
            })
            .collect::<Result<_>>()?
    } else {
        vec![Root::new(Path::new("."), opts)?]
    };
    let mut out = Vec::new();
    for p in paths {
        let mut path = PathBuf::from(p);
        if given && path.is_relative() && !path.exists() {
            // As protoc: a relative argument not found here may name a
            // file by its import path under a root (`-I proto shop/a.proto`).
            if let Some(r) = opts.roots.iter().map(|r| r.join(p)).find(|c| c.exists()) {
                path = r;
            }
        }
        let path = path.as_path();
        if path.is_dir() {
            if !given {
                out.extend(read_dir(path, opts)?);
                continue;
            }
            let Some((root, prefix)) = under_root(path, &roots)? else {
                return Err(outside_roots(p, &roots, given));
            };
            let mut walk = Walk {
                root,
                stack: Vec::new(),
                files: Vec::new(),
            };
            walk.dir(path, &prefix)?;
            if walk.files.is_empty() {
                return Err(Error::InvalidInput(format!("no .proto files under {p}")));
            }
            for (path, import) in walk.files {
                out.push(read(&path, import)?);
            }
        } else if path.is_file() {
            if !is_proto(path) {
                return Err(Error::InvalidInput(format!("{p} is not a .proto file")));
            }
            let Some((root, import)) = under_root(path, &roots)? else {
                return Err(outside_roots(p, &roots, given));
            };
            if fs::symlink_metadata(path).is_ok_and(|m| m.is_symlink()) {
                root.check_link(path)?;
            }
            out.push(read(path, import)?);
        } else {
            return Err(Error::InvalidInput(format!(
                "{p}: no such file or directory"
            )));
        }
    }
    Ok(out)
}

fn refuse_link(path: &Path) -> Error {
    Error::InvalidInput(format!(
        "{}: a symbolic link inside the output directory; refusing to write through it (remove it, or choose another --out)",
        path.display()
    ))
}

/// What is at `path`, without following a final symbolic link.
fn existing(path: &Path) -> Result<Option<fs::Metadata>> {
    match fs::symlink_metadata(path) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(input_error(path, e)),
    }
}

/// Checks that every directory on the way to `rel` under `out` is a real
/// directory or absent, and the file itself a regular file or absent.
fn check_target(out: &Path, rel: &str) -> Result<()> {
    let mut cur = out.to_path_buf();
    let segments: Vec<&str> = rel.split('/').collect();
    for (i, seg) in segments.iter().enumerate() {
        cur.push(seg);
        let last = i + 1 == segments.len();
        match existing(&cur)? {
            None => return Ok(()),
            Some(m) if m.is_symlink() => return Err(refuse_link(&cur)),
            Some(m) if !last && !m.is_dir() => {
                return Err(Error::InvalidInput(format!(
                    "{}: exists and is not a directory",
                    cur.display()
                )));
            }
            Some(m) if last && !m.is_file() => {
                return Err(Error::InvalidInput(format!(
                    "{}: exists and is not a regular file",
                    cur.display()
                )));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Creates `dir` (one level) unless it is there, refusing a link.
fn make_dir(dir: &Path) -> Result<()> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => match existing(dir)? {
            Some(m) if m.is_dir() => Ok(()),
            Some(m) if m.is_symlink() => Err(refuse_link(dir)),
            _ => Err(Error::InvalidInput(format!(
                "{}: exists and is not a directory",
                dir.display()
            ))),
        },
        Err(e) => Err(input_error(dir, e)),
    }
}

/// Writes `bytes` as `target`: to a new file beside it (create-new never
/// follows a link), then renamed over it, so whatever `target` was (a
/// link, a hard link to a file elsewhere) is replaced, never written to.
fn write_file(target: &Path, bytes: &[u8]) -> Result<()> {
    let name = target.file_name().expect("a file path").to_string_lossy();
    let tmp = target.with_file_name(format!(
        ".{name}.protoshelf-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    let written = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(input_error(&tmp, e));
    }
    fs::rename(&tmp, target).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        input_error(target, e)
    })
}

/// Writes `files` (import path, content) under `out` at their import paths.
/// `out` itself is created when missing and may be a link (the caller named
/// it); inside it nothing is written through a symbolic link: a link to a
/// directory or file in the way is refused before anything is written.
pub fn write_tree(out: &Path, files: &[(&str, &[u8])]) -> Result<()> {
    for (rel, _) in files {
        // Stored paths were validated on publish; check again before they
        // become local paths.
        crate::ids::validate_file_path(rel)?;
    }
    fs::create_dir_all(out).map_err(|e| input_error(out, e))?;
    for (rel, _) in files {
        check_target(out, rel)?;
    }
    for (rel, bytes) in files {
        let mut dir = out.to_path_buf();
        let (parents, _) = rel.rsplit_once('/').unwrap_or(("", rel));
        for seg in parents.split('/').filter(|s| !s.is_empty()) {
            dir.push(seg);
            make_dir(&dir)?;
        }
        let target = out.join(rel);
        // Checked again right before the write: the check above ran for
        // every file first, so a tree that cannot be written fully is not
        // written at all.
        check_target(out, rel)?;
        write_file(&target, bytes)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    const PROTO: &[u8] = b"syntax = \"proto3\";\npackage p;\nmessage M {}\n";

    fn tree() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        let outside = t.path().join("outside");
        fs::create_dir_all(root.join("a")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(root.join("a/x.proto"), PROTO).unwrap();
        fs::write(outside.join("s.proto"), PROTO).unwrap();
        fs::write(outside.join("secret.txt"), b"TOPSECRET token").unwrap();
        (t, root, outside)
    }

    fn names(files: &[SourceFile]) -> Vec<&str> {
        files.iter().map(|f| f.path.as_str()).collect()
    }

    fn refused(r: Result<Vec<SourceFile>>, needles: &[&str]) -> String {
        let msg = r.unwrap_err().to_string();
        for n in needles {
            assert!(msg.contains(n), "{n:?} not in {msg}");
        }
        assert!(!msg.contains("TOPSECRET"), "content echoed: {msg}");
        msg
    }

    #[test]
    fn directory_link_outside_is_refused_unless_followed() {
        let (_t, root, outside) = tree();
        symlink(&outside, root.join("ext")).unwrap();
        let opts = ReadOptions::default();
        refused(
            read_dir(&root, &opts),
            &["ext", "outside", "--follow-symlinks"],
        );
        let follow = ReadOptions {
            follow_symlinks: true,
            ..Default::default()
        };
        assert_eq!(
            names(&read_dir(&root, &follow).unwrap()),
            ["a/x.proto", "ext/s.proto"]
        );
    }

    #[test]
    fn file_link_outside_is_refused_and_not_read() {
        let (_t, root, outside) = tree();
        symlink(outside.join("s.proto"), root.join("l.proto")).unwrap();
        refused(
            read_dir(&root, &ReadOptions::default()),
            &["l.proto", "s.proto"],
        );
        // As a push argument, too (under its import root).
        let arg = root.join("l.proto").display().to_string();
        let rooted = ReadOptions {
            roots: vec![root.clone()],
            ..Default::default()
        };
        refused(collect(&[arg], &rooted), &["l.proto", "outside"]);
    }

    #[test]
    fn link_to_a_file_that_is_not_proto_is_refused_even_when_followed() {
        let (_t, root, outside) = tree();
        symlink(outside.join("secret.txt"), root.join("a/y.proto")).unwrap();
        let follow = ReadOptions {
            follow_symlinks: true,
            ..Default::default()
        };
        refused(read_dir(&root, &follow), &["y.proto", "not a .proto file"]);
        fs::write(root.join("notes.txt"), b"TOPSECRET").unwrap();
        symlink(root.join("notes.txt"), root.join("n.proto")).unwrap();
        let arg = root.join("n.proto").display().to_string();
        let follow = ReadOptions {
            roots: vec![root.clone()],
            ..follow
        };
        refused(collect(&[arg], &follow), &["not a .proto file"]);
    }

    #[test]
    fn links_inside_the_root_are_followed() {
        let (_t, root, _) = tree();
        symlink(root.join("a"), root.join("b")).unwrap();
        symlink("a/x.proto", root.join("y.proto")).unwrap();
        assert_eq!(
            names(&read_dir(&root, &ReadOptions::default()).unwrap()),
            ["a/x.proto", "b/x.proto", "y.proto"]
        );
    }

    #[test]
    fn path_filters_match_files_and_directories() {
        let none = PathFilter::new(&[], &[]).unwrap();
        assert!(!none.is_set() && none.keeps("a/b.proto"));
        let f = PathFilter::new(
            &["google/**".into(), "top.proto".into()],
            &["google/api/expr".into(), "**/*_test.proto".into()],
        )
        .unwrap();
        assert!(f.keeps("google/type/date.proto"));
        assert!(f.keeps("top.proto"));
        assert!(
            !f.keeps("other/top.proto"),
            "* and names stay in their directory"
        );
        assert!(
            !f.keeps("google/api/expr/v1/syntax.proto"),
            "a matched directory excludes its files"
        );
        assert!(f.keeps("google/api/expression.proto"));
        assert!(!f.keeps("google/type/date_test.proto"));
        let star = PathFilter::new(&["*.proto".into()], &[]).unwrap();
        assert!(star.keeps("a.proto") && !star.keeps("d/a.proto"));
        let msg = PathFilter::new(&["a[".into()], &[])
            .unwrap_err()
            .to_string();
        assert!(msg.contains("--include \"a[\""), "{msg}");
    }

    #[test]
    fn a_link_loop_is_an_error_not_a_hang() {
        let (_t, root, _) = tree();
        symlink("..", root.join("a/up")).unwrap();
        refused(read_dir(&root, &ReadOptions::default()), &["loop"]);
    }

    #[test]
    fn write_tree_refuses_a_linked_directory_and_writes_nothing() {
        let (_t, root, outside) = tree();
        let out = root.join("out");
        fs::create_dir_all(&out).unwrap();
        symlink(&outside, out.join("google")).unwrap();
        let files: [(&str, &[u8]); 2] = [("a.proto", PROTO), ("google/x.proto", PROTO)];
        let msg = write_tree(&out, &files).unwrap_err().to_string();
        assert!(
            msg.contains("google") && msg.contains("symbolic link"),
            "{msg}"
        );
        assert!(!out.join("a.proto").exists(), "half-written");
        assert!(
            !outside.join("x.proto").exists(),
            "written through the link"
        );
    }

    #[test]
    fn write_tree_never_overwrites_a_file_outside() {
        let (_t, root, outside) = tree();
        let out = root.join("out");
        fs::create_dir_all(&out).unwrap();
        symlink(outside.join("secret.txt"), out.join("s.proto")).unwrap();
        let files: [(&str, &[u8]); 1] = [("s.proto", PROTO)];
        let msg = write_tree(&out, &files).unwrap_err().to_string();
        assert!(
            msg.contains("s.proto") && msg.contains("symbolic link"),
            "{msg}"
        );
        // A hard link is replaced, not written through.
        fs::remove_file(out.join("s.proto")).unwrap();
        fs::hard_link(outside.join("secret.txt"), out.join("s.proto")).unwrap();
        write_tree(&out, &files).unwrap();
        assert_eq!(fs::read(out.join("s.proto")).unwrap(), PROTO);
        assert_eq!(
            fs::read(outside.join("secret.txt")).unwrap(),
            b"TOPSECRET token"
        );
    }

    #[test]
    fn write_tree_writes_nested_paths_and_overwrites_its_own_files() {
        let (_t, root, _) = tree();
        let out = root.join("new/out");
        let files: [(&str, &[u8]); 2] = [("a/b/c.proto", PROTO), ("d.proto", b"x")];
        write_tree(&out, &files).unwrap();
        write_tree(&out, &files).unwrap();
        assert_eq!(fs::read(out.join("a/b/c.proto")).unwrap(), PROTO);
        assert_eq!(fs::read_dir(&out).unwrap().count(), 2, "no temp files left");
    }
}
