//! Source positions of descriptors, from the `source_code_info` of their file.

use std::collections::{HashMap, HashSet};
use std::fmt;

use prost_reflect::{
    DescriptorPool, EnumDescriptor, EnumValueDescriptor, ExtensionDescriptor, FieldDescriptor,
    FileDescriptor, MessageDescriptor, MethodDescriptor, OneofDescriptor, ServiceDescriptor,
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

/// Where a descriptor is defined: its file and the `SourceCodeInfo` paths
/// that may locate it, the first one found winning. Checks record sites;
/// [`locate`] turns them into [`Location`]s once the check is done, so the
/// pools checked need no source info (a dense file's locations cost more
/// memory than the rest of its descriptors) and only what is reported is
/// looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Site {
    file: String,
    paths: Vec<Vec<i32>>,
}

impl Site {
    pub(super) fn at(file: &FileDescriptor, path: &[i32]) -> Site {
        Site {
            file: file.name().to_owned(),
            paths: vec![path.to_vec()],
        }
    }

    /// This site, else `other` when none of this site's paths is found.
    pub(super) fn or(mut self, other: Option<Site>) -> Site {
        if let Some(other) = other.filter(|o| o.file == self.file) {
            self.paths.extend(other.paths);
        }
        self
    }
}

/// Fills in each violation's location from its site: from the source info
/// of its file in `new` when the pool has it, else from `new_set` (the
/// encoded `FileDescriptorSet` the pool was made from, source info
/// included), read once per file, one location at a time.
pub(super) fn locate(
    violations: &mut [super::Violation],
    new: &DescriptorPool,
    new_set: Option<&[u8]>,
) {
    let mut wanted: HashMap<&str, HashSet<&[i32]>> = HashMap::new();
    for v in violations.iter() {
        if let Some(site) = &v.site {
            wanted
                .entry(&site.file)
                .or_default()
                .extend(site.paths.iter().map(Vec::as_slice));
        }
    }
    let mut found: HashMap<(String, Vec<i32>), Location> = HashMap::new();
    for (file, paths) in wanted {
        let mut record = |path: &[i32], span: &[i32]| {
            if !paths.contains(path) || found.contains_key(&(file.to_owned(), path.to_vec())) {
                return;
            }
            // Spans are 0-based `[line, column, ...]`.
            let at = |i: usize| span.get(i).and_then(|n| u32::try_from(*n).ok());
            if let (Some(line), Some(column)) = (at(0), at(1)) {
                let location = Location {
                    file: file.to_owned(),
                    line: line + 1,
                    column: column + 1,
                };
                found.insert((file.to_owned(), path.to_vec()), location);
            }
        };
        let in_pool = new
            .get_file_by_name(file)
            .and_then(|f| f.file_descriptor_proto().source_code_info.clone())
            .filter(|info| !info.location.is_empty());
        match in_pool {
            Some(info) => info.location.iter().for_each(|l| record(&l.path, &l.span)),
            None => {
                if let Some(info) = new_set.and_then(|set| encoded_info(set, file)) {
                    each_location(info, &mut record);
                }
            }
        }
    }
    for v in violations.iter_mut() {
        if let Some(site) = &v.site {
            v.location = site
                .paths
                .iter()
                .find_map(|p| found.get(&(site.file.clone(), p.clone())))
                .cloned();
        }
    }
}

/// The encoded `source_code_info` (field 9) of the file named `name` in an
/// encoded `FileDescriptorSet`, without decoding anything else.
fn encoded_info<'a>(set: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let mut found = None;
    for_each_field(set, |number, bytes| {
        if number == 1 && found.is_none() {
            let mut file_name = None;
            let mut info = None;
            for_each_field(bytes, |n, b| match n {
                1 => file_name = std::str::from_utf8(b).ok(),
                9 => info = Some(b),
                _ => {}
            });
            if file_name == Some(name) {
                found = info;
            }
        }
    });
    found
}

/// Calls `f` with the path and span of each location of an encoded
/// `SourceCodeInfo`, decoding one location at a time.
fn each_location(info: &[u8], f: &mut impl FnMut(&[i32], &[i32])) {
    use prost::Message;
    for_each_field(info, |number, bytes| {
        if number == 1
            && let Ok(l) = prost_types::source_code_info::Location::decode(bytes)
        {
            f(&l.path, &l.span);
        }
    });
}

/// Calls `f` with the number and bytes of each length-delimited field of an
/// encoded message, skipping the others; stops at the first malformed one.
fn for_each_field<'a>(mut buf: &'a [u8], mut f: impl FnMut(u32, &'a [u8])) {
    use prost::encoding::{DecodeContext, WireType, decode_key, decode_varint, skip_field};
    while !buf.is_empty() {
        let Ok((number, wire_type)) = decode_key(&mut buf) else {
            return;
        };
        if wire_type == WireType::LengthDelimited {
            let Ok(len) = decode_varint(&mut buf) else {
                return;
            };
            let Some(len) = usize::try_from(len).ok().filter(|l| *l <= buf.len()) else {
                return;
            };
            let (field, rest) = buf.split_at(len);
            f(number, field);
            buf = rest;
        } else if skip_field(wire_type, number, &mut buf, DecodeContext::default()).is_err() {
            return;
        }
    }
}

/// A descriptor whose definition can be located in its file.
pub(super) trait Located {
    fn location(&self) -> Option<Site>;
}

impl Located for FileDescriptor {
    fn location(&self) -> Option<Site> {
        // The empty path spans the whole file, from its first statement.
        Some(Site::at(self, &[]))
    }
}

/// Map entry messages are generated, so they and their key and value fields
/// are located at the map field that declares them.
impl Located for MessageDescriptor {
    fn location(&self) -> Option<Site> {
        if !self.is_map_entry() {
            return Some(Site::at(&self.parent_file(), self.path()));
        }
        let map_field = self
            .parent_message()?
            .fields()
            .find(|field| field.kind().as_message() == Some(self))?;
        map_field.location()
    }
}

impl Located for FieldDescriptor {
    fn location(&self) -> Option<Site> {
        let message = self.parent_message();
        if message.is_map_entry() {
            message.location()
        } else {
            Some(Site::at(&self.parent_file(), self.path()))
        }
    }
}

macro_rules! impl_located {
    ($($descriptor:ty),*) => {$(
        impl Located for $descriptor {
            fn location(&self) -> Option<Site> {
                Some(Site::at(&self.parent_file(), self.path()))
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
