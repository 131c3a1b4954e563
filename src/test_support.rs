//! Helpers the library's unit tests share.

use std::collections::HashMap;

use prost_reflect::DescriptorPool;
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};

/// In-memory `.proto` sources.
struct Sources(HashMap<String, String>);

impl FileResolver for Sources {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        match self.0.get(name) {
            Some(source) => File::from_source(name, source),
            None => Err(protox::Error::file_not_found(name)),
        }
    }
}

/// Compiles `(path, source)` files the way the registry does: into a
/// self-contained descriptor set with source info.
pub fn compile(files: &[(&str, &str)]) -> DescriptorPool {
    let sources = files.iter().map(|(p, s)| (p.to_string(), s.to_string()));
    let mut resolver = ChainFileResolver::new();
    resolver.add(Sources(sources.collect()));
    resolver.add(GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler.include_imports(true).include_source_info(true);
    compiler
        .open_files(files.iter().map(|(path, _)| path))
        .unwrap_or_else(|e| panic!("{e:?}"));
    DescriptorPool::from_file_descriptor_set(compiler.file_descriptor_set()).unwrap()
}
