//! Schemas as the Confluent clients send them: `.proto` source or a base64
//! `FileDescriptorProto`; their canonical text, content hash, and compile.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use prost::Message;
use prost_reflect::DescriptorPool;
use prost_types::FileDescriptorProto;
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};
use sha2::{Digest, Sha256};

use super::error::{ConfluentError, Result};
use crate::objstore::records::SchemaReference;

pub const PROTOBUF: &str = "PROTOBUF";

/// A schema as received.
#[derive(Debug, Clone)]
pub enum Input {
    Source(String),
    Descriptor(Box<FileDescriptorProto>),
}

impl Input {
    /// Reads the `schema` field: a base64 `FileDescriptorProto` when it
    /// decodes as one, else `.proto` source.
    pub fn parse(schema: &str) -> Result<Input> {
        let trimmed = schema.trim();
        if !trimmed.is_empty()
            && !trimmed.contains(char::is_whitespace)
            && let Ok(bytes) = B64.decode(trimmed)
            && let Ok(fdp) = FileDescriptorProto::decode(bytes.as_slice())
            && (fdp.name.is_some() || !fdp.message_type.is_empty() || fdp.syntax.is_some())
        {
            return Ok(Input::Descriptor(Box::new(fdp)));
        }
        let text = crate::registry::normalize::normalize("schema", schema.as_bytes())
            .map_err(|e| ConfluentError::InvalidSchema(e.to_string()))?;
        if text.trim().is_empty() {
            return Err(ConfluentError::InvalidSchema("the schema is empty".into()));
        }
        Ok(Input::Source(text))
    }

    /// The text stored and served: the source as given (normalized), or
    /// the descriptor printed as source.
    pub fn text(&self) -> String {
        match self {
            Input::Source(s) => s.clone(),
            Input::Descriptor(d) => crate::fs::wkt::print_file(d),
        }
    }

    /// The file name a descriptor carries, if valid as a path.
    pub fn name(&self) -> Option<&str> {
        match self {
            Input::Descriptor(d) => d
                .name
                .as_deref()
                .filter(|n| crate::ids::validate_file_path(n).is_ok()),
            Input::Source(_) => None,
        }
    }
}

/// SHA-256 identifying a schema's content: type, text and references.
/// Identical content gets one global ID.
pub fn content_hash(schema_type: &str, text: &str, references: &[SchemaReference]) -> String {
    let canonical = serde_json::json!({
        "schemaType": schema_type,
        "schema": text,
        "references": references,
    });
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

struct MapResolver(BTreeMap<String, String>);

impl FileResolver for MapResolver {
    fn open_file(&self, name: &str) -> std::result::Result<File, protox::Error> {
        match self.0.get(name) {
            Some(src) => File::from_source(name, src),
            None => Err(protox::Error::file_not_found(name)),
        }
    }
}

/// Compiles `main` with the other `files` (import path → source) and the
/// well-known types; returns the pool.
pub fn compile(main: &str, files: &BTreeMap<String, String>) -> Result<DescriptorPool> {
    // The registry's nesting guard: protox recurses per level, and this
    // runs on a server worker's stack, where a deep enough schema (found by
    // fuzzing) aborted the whole process.
    for (path, text) in files {
        crate::registry::guard::check_nesting(path, text)
            .map_err(|e| ConfluentError::InvalidSchema(e.to_string()))?;
    }
    let mut chain = ChainFileResolver::new();
    chain.add(MapResolver(files.clone()));
    chain.add(GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(chain);
    compiler.include_imports(true);
    compiler
        .open_file(main)
        .map_err(|e| ConfluentError::InvalidSchema(crate::registry::compile::describe(&e)))?;
    Ok(compiler.descriptor_pool())
}

/// The main file's descriptor, base64 (`format=serialized`).
pub fn serialized(pool: &DescriptorPool, main: &str) -> String {
    pool.get_file_by_name(main)
        .map(|f| {
            // Source positions are for editors, not for decoding.
            let mut fdp = f.file_descriptor_proto().clone();
            fdp.source_code_info = None;
            B64.encode(fdp.encode_to_vec())
        })
        .unwrap_or_default()
}

/// `normalize=true`: the compiled file printed back, so formatting and
/// comments do not make a different schema.
pub fn canonical_text(pool: &DescriptorPool, main: &str) -> Option<String> {
    pool.get_file_by_name(main)
        .map(|f| crate::fs::wkt::print_file(f.file_descriptor_proto()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "syntax = \"proto3\";\npackage t;\nimport \"google/protobuf/timestamp.proto\";\nmessage A { google.protobuf.Timestamp at = 1; string s = 2; }\n";

    #[test]
    fn source_and_descriptor_inputs_give_one_text_after_normalizing() {
        let files = BTreeMap::from([("a.proto".to_string(), SRC.to_string())]);
        let pool = compile("a.proto", &files).unwrap();
        let b64 = serialized(&pool, "a.proto");
        let Input::Descriptor(d) = Input::parse(&b64).unwrap() else {
            panic!("base64 descriptor not recognised")
        };
        assert_eq!(d.name(), "a.proto");
        let Input::Source(s) = Input::parse(SRC).unwrap() else {
            panic!("source not recognised")
        };
        assert_eq!(s, SRC);
        // The printed descriptor compiles back to the same message.
        let printed = Input::Descriptor(d).text();
        let again = compile(
            "a.proto",
            &BTreeMap::from([("a.proto".to_string(), printed.clone())]),
        )
        .unwrap();
        assert_eq!(canonical_text(&again, "a.proto").unwrap(), printed);
        assert_eq!(canonical_text(&pool, "a.proto").unwrap(), printed);
        assert!(again.get_message_by_name("t.A").is_some());
    }

    #[test]
    fn bad_schemas_are_invalid_with_a_location() {
        let files = BTreeMap::from([(
            "a.proto".to_string(),
            "syntax = \"proto3\";\nmessage {".to_string(),
        )]);
        let e = compile("a.proto", &files).unwrap_err().to_string();
        assert!(e.starts_with("Invalid schema: a.proto:2:"), "{e}");
        assert!(Input::parse("  \n").is_err());
    }

    #[test]
    fn hash_depends_on_text_type_and_references() {
        let r = |v| SchemaReference {
            name: "b.proto".into(),
            subject: "b".into(),
            version: v,
        };
        let h = content_hash(PROTOBUF, SRC, &[r(1)]);
        assert_eq!(h, content_hash(PROTOBUF, SRC, &[r(1)]));
        assert_ne!(h, content_hash(PROTOBUF, SRC, &[r(2)]));
        assert_ne!(h, content_hash(PROTOBUF, "x", &[r(1)]));
    }
}
