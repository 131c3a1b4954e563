//! Checks of a mountpoint before mounting: FUSE (fusermount3) mounts over a
//! non-empty directory and over another mount without a word, hiding what
//! was there or stacking two mounts, so both are refused first.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Refuses a mountpoint that does not exist, is not a directory, is a
/// mount point already (per `mountinfo`, the text of
/// `/proc/self/mountinfo`), or is not empty unless `allow_non_empty`.
pub fn check(path: &Path, mountinfo: &str, allow_non_empty: bool) -> Result<()> {
    let shown = path.display();
    let already = |at: &Path| {
        mounted_at(mountinfo, at).map(|fstype| {
            Error::InvalidInput(format!(
                "mountpoint {shown} is already a mount point ({fstype}): unmount it first (fusermount3 -u {shown}), or choose another directory"
            ))
        })
    };
    // Before touching it: a dead FUSE mount fails every stat with ENOTCONN.
    if let Some(e) = std::path::absolute(path).ok().and_then(|a| already(&a)) {
        return Err(e);
    }
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::InvalidInput(format!(
                "mountpoint {shown} does not exist: create it first (mkdir -p {shown})"
            )));
        }
        Err(e) => return Err(Error::InvalidInput(format!("mountpoint {shown}: {e}"))),
    };
    if !meta.is_dir() {
        return Err(Error::InvalidInput(format!(
            "mountpoint {shown} is not a directory"
        )));
    }
    let canonical = path
        .canonicalize()
        .map_err(|e| Error::InvalidInput(format!("mountpoint {shown}: {e}")))?;
    if let Some(e) = already(&canonical) {
        return Err(e);
    }
    if !allow_non_empty {
        let entries = std::fs::read_dir(path)
            .map_err(|e| Error::InvalidInput(format!("mountpoint {shown}: {e}")))?
            .count();
        if entries > 0 {
            return Err(Error::InvalidInput(format!(
                "mountpoint {shown} is not empty ({entries} entr{}): the mount would hide them; choose an empty directory, or give --allow-non-empty",
                if entries == 1 { "y" } else { "ies" }
            )));
        }
    }
    Ok(())
}

/// The file system type mounted at `path` (canonical), if any, from
/// mountinfo lines: `id parent major:minor root mountpoint opts... - fstype
/// source superopts`, with space, tab, newline and backslash in paths as
/// octal escapes.
pub fn mounted_at(mountinfo: &str, path: &Path) -> Option<String> {
    mountinfo.lines().rev().find_map(|line| {
        let mut fields = line.split(' ');
        let point = fields.nth(4)?;
        if unescape(point) != path {
            return None;
        }
        let mut rest = fields.skip_while(|f| *f != "-");
        rest.next()?;
        Some(rest.next().unwrap_or("unknown").to_string())
    })
}

fn unescape(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "22 1 0:21 / / rw,relatime - ext4 /dev/sda1 rw\n\
        40 22 0:35 / /mnt/with\\040space rw,nosuid shared:1 - fuse.protoshelf protoshelf ro\n\
        41 22 0:36 / /mnt/plain rw - tmpfs tmpfs rw\n";

    #[test]
    fn mountinfo_is_parsed_with_escapes() {
        assert_eq!(
            mounted_at(INFO, Path::new("/mnt/with space")).as_deref(),
            Some("fuse.protoshelf")
        );
        assert_eq!(
            mounted_at(INFO, Path::new("/mnt/plain")).as_deref(),
            Some("tmpfs")
        );
        assert_eq!(mounted_at(INFO, Path::new("/mnt")), None);
        assert_eq!(mounted_at(INFO, Path::new("/")).as_deref(), Some("ext4"));
    }

    #[test]
    fn mountpoints_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = check(&missing, "", false).unwrap_err().to_string();
        assert!(
            err.contains("does not exist") && err.contains("mkdir -p"),
            "{err}"
        );
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let err = check(&file, "", false).unwrap_err().to_string();
        assert!(err.contains("is not a directory"), "{err}");
        // The directory now holds one entry.
        let err = check(dir.path(), "", false).unwrap_err().to_string();
        assert!(
            err.contains("not empty (1 entry)") && err.contains("--allow-non-empty"),
            "{err}"
        );
        check(dir.path(), "", true).unwrap();
        let info = format!(
            "41 22 0:36 / {} rw - fuse.protoshelf protoshelf ro\n",
            dir.path().canonicalize().unwrap().display()
        );
        let err = check(dir.path(), &info, true).unwrap_err().to_string();
        assert!(
            err.contains("already a mount point (fuse.protoshelf)"),
            "{err}"
        );
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        check(&empty, &info, false).unwrap();
    }
}
