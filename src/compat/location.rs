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
        // A linear scan is fine: only violations are located.
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

/// Map entry messages are generated, so they and their key and value fields
/// are located at the map field that declares them.
impl Located for MessageDescriptor {
    fn location(&self) -> Option<Location> {
        if !self.is_map_entry() {
            return Location::find(&self.parent_file(), self.path());
        }
        let map_field = self
            .parent_message()?
            .fields()
            .find(|field| field.kind().as_message() == Some(self))?;
        map_field.location()
    }
}

impl Located for FieldDescriptor {
    fn location(&self) -> Option<Location> {
        let message = self.parent_message();
        if message.is_map_entry() {
            message.location()
        } else {
            Location::find(&self.parent_file(), self.path())
        }
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
    ExtensionDescriptor,
    OneofDescriptor,
    EnumDescriptor,
    EnumValueDescriptor,
    ServiceDescriptor,
    MethodDescriptor
);
