//! Source positions of descriptors, from the `source_code_info` of their file.

use std::fmt;

use prost_reflect::{
    EnumDescriptor, EnumValueDescriptor, ExtensionDescriptor, FieldDescriptor, FileDescriptor,
    MessageDescriptor, MethodDescriptor, OneofDescriptor, ServiceDescriptor,
};
use serde::{Deserialize, Serialize};

/// A position in a `.proto` file, 1-based.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Location {
    pub file: String,
    pub line: u32,
    pub column: u32,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

impl Location {
    /// The start of the span recorded for `path` (a `SourceCodeInfo` path) in
    /// `file`, or `None` when the file was compiled without source info.
    pub(super) fn find(file: &FileDescriptor, path: &[i32]) -> Option<Location> {
        let info = file.file_descriptor_proto().source_code_info.as_ref()?;
        let span = &info.location.iter().find(|l| l.path == path)?.span;
        // Spans are 0-based `[line, column, ...]`.
        Some(Location {
            file: file.name().to_owned(),
            line: u32::try_from(*span.first()?).ok()? + 1,
            column: u32::try_from(*span.get(1)?).ok()? + 1,
        })
    }
}

/// A descriptor whose definition can be located in its file.
pub(super) trait Located {
    fn location(&self) -> Option<Location>;
}

impl Located for FileDescriptor {
    fn location(&self) -> Option<Location> {
        // The empty path spans the whole file, from its first statement.
        Location::find(self, &[])
    }
}

macro_rules! impl_located {
    ($($descriptor:ty),*) => {$(
        impl Located for $descriptor {
            fn location(&self) -> Option<Location> {
                Location::find(&self.parent_file(), self.path())
            }
        }
    )*};
}

impl_located!(
    MessageDescriptor,
    FieldDescriptor,
    ExtensionDescriptor,
    OneofDescriptor,
    EnumDescriptor,
    EnumValueDescriptor,
    ServiceDescriptor,
    MethodDescriptor
);
