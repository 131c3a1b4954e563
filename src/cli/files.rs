//! Reading `.proto` files from the command line's paths.

use std::path::Path;

use protoshelf::registry::{Limits, SourceFile};
use protoshelf::{Error, Result};

fn read(path: &Path, import_path: String) -> Result<SourceFile> {
    let limit = Limits::default().max_file_bytes as u64;
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::InvalidInput(format!("{}: {e}", path.display())))?;
    if meta.len() > limit {
        // Refused before reading it into memory.
        return Err(Error::InvalidInput(format!(
            "{}: {} bytes; the limit per file is {limit} bytes",
            path.display(),
            meta.len()
        )));
    }
    let content =
        std::fs::read(path).map_err(|e| Error::InvalidInput(format!("{}: {e}", path.display())))?;
    Ok(SourceFile::new(import_path, content))
}

/// The `.proto` files under `dir`, named by their path relative to it
/// (`/`-separated), sorted.
pub fn from_dir(dir: &Path) -> Result<Vec<SourceFile>> {
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(dir)
        .follow_links(true)
        .sort_by_file_name()
    {
        let entry = entry.map_err(|e| Error::InvalidInput(format!("{}: {e}", dir.display())))?;
        if !entry.file_type().is_file() || entry.path().extension().is_none_or(|e| e != "proto") {
            continue;
        }
        let rel = entry.path().strip_prefix(dir).expect("under dir");
        let import: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        out.push(read(entry.path(), import.join("/"))?);
    }
    if out.is_empty() {
        return Err(Error::InvalidInput(format!(
            "no .proto files under {}",
            dir.display()
        )));
    }
    Ok(out)
}

/// Files and directories as `push` takes them: a directory contributes its
/// `.proto` files at their paths relative to it; a file is named by its
/// file name.
pub fn collect(paths: &[String]) -> Result<Vec<SourceFile>> {
    let mut out = Vec::new();
    for p in paths {
        let path = Path::new(p);
        if path.is_dir() {
            out.extend(from_dir(path)?);
        } else if path.is_file() {
            if path.extension().is_none_or(|e| e != "proto") {
                return Err(Error::InvalidInput(format!("{p} is not a .proto file")));
            }
            let name = path
                .file_name()
                .expect("a file has a name")
                .to_string_lossy()
                .into_owned();
            out.push(read(path, name)?);
        } else {
            return Err(Error::InvalidInput(format!(
                "{p}: no such file or directory"
            )));
        }
    }
    Ok(out)
}
