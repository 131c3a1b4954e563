//! Source normalization: the stored bytes of a `.proto` file, whose SHA-256
//! is its blob key. Whitespace noise (BOM, CRLF, trailing spaces, trailing
//! blank lines) does not make a new version; everything else does, comments
//! included, because protoc plugins and documentation generators read them.

use crate::error::{Error, Result};

/// Normalizes `raw` (the file at `path`, for messages): UTF-8 required; BOM
/// removed; CRLF and lone CR become LF; trailing spaces and tabs removed from
/// every line; trailing blank lines removed; ends with exactly one newline
/// (an empty file stays empty).
pub fn normalize(path: &str, raw: &[u8]) -> Result<String> {
    let text = std::str::from_utf8(raw).map_err(|e| {
        Error::InvalidInput(format!(
            "{path}: not UTF-8 text (invalid byte at offset {})",
            e.valid_up_to()
        ))
    })?;
    if text.contains('\0') {
        return Err(Error::InvalidInput(format!(
            "{path}: contains a NUL byte (binary file?)"
        )));
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut out = String::with_capacity(text.len() + 1);
    for line in text.split('\n') {
        out.push_str(line.trim_end_matches([' ', '\t']));
        out.push('\n');
    }
    let trimmed = out.trim_end_matches('\n').len();
    out.truncate(trimmed);
    if !out.is_empty() {
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn whitespace_noise_is_removed() {
        let raw = "\u{feff}syntax = \"proto3\";  \r\n\r\nmessage A {}\t\r\n\r\n\n";
        assert_eq!(
            normalize("a.proto", raw.as_bytes()).unwrap(),
            "syntax = \"proto3\";\n\nmessage A {}\n"
        );
        assert_eq!(normalize("a.proto", b"x\ry").unwrap(), "x\ny\n");
        assert_eq!(normalize("a.proto", b"").unwrap(), "");
        assert_eq!(normalize("a.proto", b"\n\n").unwrap(), "");
    }

    #[test]
    fn content_and_comments_are_kept() {
        let a = normalize("a.proto", b"// one\nmessage A {}\n").unwrap();
        let b = normalize("a.proto", b"// two\nmessage A {}\n").unwrap();
        assert_ne!(a, b);
        // Leading indentation is content too.
        assert_eq!(normalize("a.proto", b"  x").unwrap(), "  x\n");
    }

    #[test]
    fn binary_is_rejected() {
        let err = normalize("bin.proto", &[0x66, 0xff, 0xfe])
            .unwrap_err()
            .to_string();
        assert!(err.contains("bin.proto") && err.contains("UTF-8"), "{err}");
        assert!(normalize("nul.proto", b"a\0b").is_err());
    }
}
