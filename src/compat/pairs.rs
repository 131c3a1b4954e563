//! Pairs each element of the old version with its counterpart in the new one.

use prost_reflect::{
    DescriptorPool, EnumDescriptor, ExtensionDescriptor, FileDescriptor, MessageDescriptor,
    ServiceDescriptor,
};

use super::location::{Located, Site};

/// An element of the old version and, unless it was deleted, the new one.
pub(super) struct Pair<T> {
    pub old: T,
    pub new: Option<T>,
}

/// Every element defined in the checked files of the old version, in
/// declaration order, matched by fully-qualified name anywhere in the new
/// version (files by path, extensions by extendee and number).
pub(super) struct Pairs<'a> {
    new: &'a DescriptorPool,
    pub files: Vec<Pair<FileDescriptor>>,
    /// Nested messages (including map entries) follow their parent.
    pub messages: Vec<Pair<MessageDescriptor>>,
    pub enums: Vec<Pair<EnumDescriptor>>,
    pub services: Vec<Pair<ServiceDescriptor>>,
    pub extensions: Vec<Pair<ExtensionDescriptor>>,
}

impl<'a> Pairs<'a> {
    pub fn new(old: &DescriptorPool, new: &'a DescriptorPool, files: &[String]) -> Self {
        let mut paths: Vec<&str> = files.iter().map(String::as_str).collect();
        paths.sort_unstable();
        paths.dedup();
        let old_files: Vec<FileDescriptor> = paths
            .into_iter()
            .filter_map(|path| old.get_file_by_name(path))
            .collect();

        let mut messages = Vec::new();
        for message in old_files.iter().flat_map(FileDescriptor::messages) {
            push_with_nested(&message, &mut messages);
        }
        let enums = old_files
            .iter()
            .flat_map(FileDescriptor::enums)
            .chain(messages.iter().flat_map(MessageDescriptor::child_enums))
            .collect::<Vec<_>>();
        let extensions = old_files
            .iter()
            .flat_map(FileDescriptor::extensions)
            .chain(
                messages
                    .iter()
                    .flat_map(MessageDescriptor::child_extensions),
            )
            .collect::<Vec<_>>();
        let services = old_files
            .iter()
            .flat_map(FileDescriptor::services)
            .collect::<Vec<_>>();

        Pairs {
            new,
            files: pair_up(old_files, |f| new.get_file_by_name(f.name())),
            messages: pair_up(messages, |m| new.get_message_by_name(m.full_name())),
            enums: pair_up(enums, |e| new.get_enum_by_name(e.full_name())),
            services: pair_up(services, |s| new.get_service_by_name(s.full_name())),
            extensions: pair_up(extensions, |e| {
                new.get_message_by_name(e.containing_message().full_name())?
                    .get_extension(e.number())
            }),
        }
    }

    /// The closest container of a deleted element that still exists in the
    /// new version: its parent message (`None` for top-level elements), or
    /// else its file. `None` when that is gone too, in which case the
    /// container's own deletion is what gets reported.
    pub fn surviving_container(
        &self,
        parent: Option<MessageDescriptor>,
        file: &FileDescriptor,
    ) -> Option<Container> {
        match parent {
            Some(parent) => self
                .new
                .get_message_by_name(parent.full_name())
                .map(Container::Message),
            None => self.new.get_file_by_name(file.name()).map(Container::File),
        }
    }
}

fn push_with_nested(message: &MessageDescriptor, out: &mut Vec<MessageDescriptor>) {
    out.push(message.clone());
    for child in message.child_messages() {
        push_with_nested(&child, out);
    }
}

fn pair_up<T>(olds: Vec<T>, find_new: impl Fn(&T) -> Option<T>) -> Vec<Pair<T>> {
    olds.into_iter()
        .map(|old| Pair {
            new: find_new(&old),
            old,
        })
        .collect()
}

/// Where a deleted element used to live.
pub(super) enum Container {
    File(FileDescriptor),
    Message(MessageDescriptor),
}

impl Located for Container {
    fn location(&self) -> Option<Site> {
        match self {
            Container::File(file) => file.location(),
            Container::Message(message) => message.location(),
        }
    }
}
