//! The reference registry's rules: nothing defined may be deleted, and fields
//! keep their name, type and cardinality; methods keep their types.
//!
//! Map entry messages are not elements of their own here: a map field's key
//! and value types are compared as part of the field.

use prost_reflect::{
    EnumDescriptor, FieldDescriptor, FileDescriptor, Kind, MessageDescriptor, ServiceDescriptor,
};

use super::location::Located;
use super::pairs::Pairs;
use super::{Violation, enum_values, rules};

pub(super) fn check(pairs: &Pairs) -> Vec<Violation> {
    let mut out = Vec::new();
    for pair in pairs.files.iter().filter(|pair| pair.new.is_none()) {
        let path = pair.old.name();
        out.push(Violation::new(
            rules::FILE_NO_DELETE,
            path,
            None,
            "file deleted".into(),
        ));
    }
    for pair in pairs.messages.iter().filter(|p| !p.old.is_map_entry()) {
        let old = &pair.old;
        match &pair.new {
            Some(new) => check_message(old, new, &mut out),
            None => out.extend(deleted(
                pairs,
                rules::MESSAGE_NO_DELETE,
                old.full_name(),
                old.parent_message(),
                &old.parent_file(),
            )),
        }
    }
    for pair in &pairs.enums {
        let old = &pair.old;
        match &pair.new {
            Some(new) => check_enum(old, new, &mut out),
            None => out.extend(deleted(
                pairs,
                rules::ENUM_NO_DELETE,
                old.full_name(),
                old.parent_message(),
                &old.parent_file(),
            )),
        }
    }
    for pair in &pairs.services {
        let old = &pair.old;
        match &pair.new {
            Some(new) => check_service(old, new, &mut out),
            None => out.extend(deleted(
                pairs,
                rules::SERVICE_NO_DELETE,
                old.full_name(),
                None,
                &old.parent_file(),
            )),
        }
    }
    out
}

/// Reports a deleted message, enum or service at its closest surviving
/// container, unless that container's own deletion covers it.
fn deleted(
    pairs: &Pairs,
    rule: &'static str,
    element: &str,
    parent: Option<MessageDescriptor>,
    file: &FileDescriptor,
) -> Option<Violation> {
    let container = pairs.surviving_container(parent, file)?;
    Some(Violation::new(
        rule,
        element,
        container.location(),
        "deleted".into(),
    ))
}

fn check_message(old: &MessageDescriptor, new: &MessageDescriptor, out: &mut Vec<Violation>) {
    for old_field in old.fields() {
        match new.get_field(old_field.number()) {
            Some(new_field) => check_field(&old_field, &new_field, out),
            None => out.push(Violation::new(
                rules::FIELD_NO_DELETE,
                old_field.full_name(),
                new.location(),
                format!(
                    "field {} ({}) deleted",
                    old_field.number(),
                    old_field.name()
                ),
            )),
        }
    }
    // Synthetic oneofs only model proto3 `optional`; they are not declared.
    for old_oneof in old.oneofs().filter(|o| !o.is_synthetic()) {
        if !new.oneofs().any(|o| o.name() == old_oneof.name()) {
            out.push(Violation::new(
                rules::ONEOF_NO_DELETE,
                old_oneof.full_name(),
                new.location(),
                "oneof deleted".into(),
            ));
        }
    }
}

fn check_field(old: &FieldDescriptor, new: &FieldDescriptor, out: &mut Vec<Violation>) {
    let violation = |rule, message| Violation::new(rule, new.full_name(), new.location(), message);
    if old.name() != new.name() {
        let message = format!("name changed from {} to {}", old.name(), new.name());
        out.push(violation(rules::FIELD_SAME_NAME, message));
    }
    if old.cardinality() != new.cardinality() {
        let [old_cardinality, new_cardinality] =
            [old, new].map(|f| format!("{:?}", f.cardinality()).to_lowercase());
        let message = format!("cardinality changed from {old_cardinality} to {new_cardinality}");
        out.push(violation(rules::FIELD_SAME_CARDINALITY, message));
    }
    if let Some((rule, message)) = type_change(old, new) {
        out.push(violation(rule, message));
    }
}

/// The first difference between the types of two fields, comparing a map's
/// key and value types rather than its generated entry message.
fn type_change(old: &FieldDescriptor, new: &FieldDescriptor) -> Option<(&'static str, String)> {
    if let (Kind::Message(old_entry), Kind::Message(new_entry)) = (old.kind(), new.kind())
        && old.is_map()
        && new.is_map()
    {
        let key = type_change(
            &old_entry.map_entry_key_field(),
            &new_entry.map_entry_key_field(),
        );
        let value = || {
            type_change(
                &old_entry.map_entry_value_field(),
                &new_entry.map_entry_value_field(),
            )
        };
        return key.or_else(value);
    }
    let (old_kind, new_kind) = (kind_name(old), kind_name(new));
    if old_kind != new_kind {
        let message = format!("type changed from {old_kind} to {new_kind}");
        return Some((rules::FIELD_SAME_TYPE, message));
    }
    let (rule, old_type, new_type) = match (old.kind(), new.kind()) {
        (Kind::Message(old_type), Kind::Message(new_type)) => (
            rules::FIELD_SAME_MESSAGE_TYPE,
            old_type.full_name().to_owned(),
            new_type.full_name().to_owned(),
        ),
        (Kind::Enum(old_type), Kind::Enum(new_type)) => (
            rules::FIELD_SAME_ENUM_TYPE,
            old_type.full_name().to_owned(),
            new_type.full_name().to_owned(),
        ),
        _ => return None,
    };
    (old_type != new_type).then(|| (rule, format!("type changed from {old_type} to {new_type}")))
}

/// The type as written, except that message and enum types are just
/// "message" and "enum" (their names are compared separately).
fn kind_name(field: &FieldDescriptor) -> String {
    match field.kind() {
        Kind::Message(_) if field.is_group() => "group".into(),
        Kind::Message(_) => "message".into(),
        Kind::Enum(_) => "enum".into(),
        scalar => format!("{scalar:?}"),
    }
}

fn check_enum(old: &EnumDescriptor, new: &EnumDescriptor, out: &mut Vec<Violation>) {
    let new_values = enum_values::by_number(new);
    for (number, old_aliases) in enum_values::by_number(old) {
        if !new_values.contains_key(&number) {
            out.push(Violation::new(
                rules::ENUM_VALUE_NO_DELETE,
                enum_values::qualified_name(&old_aliases[0]),
                new.location(),
                format!(
                    "value {number} ({}) deleted",
                    enum_values::names(&old_aliases)
                ),
            ));
        }
    }
}

fn check_service(old: &ServiceDescriptor, new: &ServiceDescriptor, out: &mut Vec<Violation>) {
    for old_method in old.methods() {
        let Some(new_method) = new.methods().find(|m| m.name() == old_method.name()) else {
            out.push(Violation::new(
                rules::METHOD_NO_DELETE,
                old_method.full_name(),
                new.location(),
                "method deleted".into(),
            ));
            continue;
        };
        let changes = [
            (
                rules::METHOD_SAME_INPUT_TYPE,
                "input",
                old_method.input(),
                new_method.input(),
            ),
            (
                rules::METHOD_SAME_OUTPUT_TYPE,
                "output",
                old_method.output(),
                new_method.output(),
            ),
        ];
        for (rule, what, old_type, new_type) in changes {
            if old_type.full_name() != new_type.full_name() {
                out.push(Violation::new(
                    rule,
                    new_method.full_name(),
                    new_method.location(),
                    format!(
                        "{what} type changed from {} to {}",
                        old_type.full_name(),
                        new_type.full_name()
                    ),
                ));
            }
        }
    }
}
