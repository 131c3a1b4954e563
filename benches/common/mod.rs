//! Fixtures shared by the benchmarks.

use protoshelf::registry::{BatchMember, SourceFile};

/// Schema `s<i>`: one small file in its own package.
pub fn small_schema(i: usize) -> BatchMember {
    BatchMember {
        schema_id: format!("s{i}"),
        files: vec![SourceFile::new(
            format!("s{i}/s{i}.proto"),
            format!("syntax = \"proto3\";\npackage p{i};\nmessage M{i} {{ string id = 1; }}\n"),
        )],
    }
}
