//! buf's `WIRE` and `WIRE_JSON` breaking-change categories.
//!
//! `WIRE_JSON` is `WIRE` plus the rules that keep the JSON encoding readable
//! (names, JSON names, JSON format support), with the stricter JSON flavour
//! of the type and cardinality rules.

use prost_reflect::{
    EnumDescriptor, FileDescriptor, MessageDescriptor, MethodDescriptor, ServiceDescriptor, Syntax,
};
use prost_types::method_options::IdempotencyLevel;

use super::Violation;
use super::enum_values;
use super::location::{Located, Site};
use super::pairs::{Pair, Pairs};
use super::reserved::Reserved;
use super::rules;
use super::wire_field::{self, FieldView};

pub(super) fn check(pairs: &Pairs, json: bool) -> Vec<Violation> {
    let mut out = Vec::new();
    for (old, new) in matched(&pairs.files) {
        same_package(old, new, &mut out);
    }
    for (old, new) in matched(&pairs.messages) {
        check_message(old, new, json, &mut out);
    }
    for (old, new) in matched(&pairs.extensions) {
        let (old, new) = (FieldView::of_extension(old), FieldView::of_extension(new));
        wire_field::check(&old, &new, json, &mut out);
    }
    for (old, new) in matched(&pairs.enums) {
        check_enum(old, new, json, &mut out);
    }
    for (old, new) in matched(&pairs.services) {
        check_service(old, new, &mut out);
    }
    out
}

/// The pairs whose element still exists in the new version; deleting whole
/// files, messages, enums, services or extensions is wire-compatible.
fn matched<T>(pairs: &[Pair<T>]) -> impl Iterator<Item = (&T, &T)> {
    pairs
        .iter()
        .filter_map(|pair| Some((&pair.old, pair.new.as_ref()?)))
}

/// `FILE_SAME_PACKAGE`: the package is part of every type's full name.
fn same_package(old: &FileDescriptor, new: &FileDescriptor, out: &mut Vec<Violation>) {
    if old.package_name() != new.package_name() {
        // Path 2 is the `package` statement.
        let location = Some(Site::at(new, &[2]).or(new.location()));
        out.push(Violation::new(
            rules::FILE_SAME_PACKAGE,
            new.name(),
            location,
            format!(
                "package changed from {:?} to {:?}",
                old.package_name(),
                new.package_name()
            ),
        ));
    }
}

fn check_message(
    old: &MessageDescriptor,
    new: &MessageDescriptor,
    json: bool,
    out: &mut Vec<Violation>,
) {
    let new_reserved = Reserved::of_message(new);
    for old_field in old.fields() {
        let number = old_field.number();
        if let Some(new_field) = new.get_field(number) {
            let old_view = FieldView::of_field(&old_field);
            wire_field::check(&old_view, &FieldView::of_field(&new_field), json, out);
            continue;
        }
        // A reserved number cannot be reused with another type, and a
        // reserved name cannot come back and be read from old JSON.
        let deleted = |rule, what| {
            let name = old_field.name();
            let message = format!("field {number} ({name}) deleted without reserving its {what}");
            Violation::new(rule, old_field.full_name(), new.location(), message)
        };
        if !new_reserved.has_number(number) {
            out.push(deleted(
                rules::FIELD_NO_DELETE_UNLESS_NUMBER_RESERVED,
                "number",
            ));
        }
        if json && !new_reserved.has_name(old_field.name()) {
            out.push(deleted(rules::FIELD_NO_DELETE_UNLESS_NAME_RESERVED, "name"));
        }
    }
    same_required_fields(old, new, out);
    for dropped in new_reserved.dropped_since(&Reserved::of_message(old)) {
        out.push(Violation::new(
            rules::RESERVED_MESSAGE_NO_DELETE,
            new.full_name(),
            new.location(),
            format!("{dropped} deleted"),
        ));
    }
    if json && lost_json_format(&old.parent_file(), &new.parent_file()) {
        out.push(Violation::new(
            rules::MESSAGE_SAME_JSON_FORMAT,
            new.full_name(),
            new.location(),
            LOST_JSON_FORMAT.to_owned(),
        ));
    }
}

/// `MESSAGE_SAME_REQUIRED_FIELDS`: a side that does not know a required field
/// fails to parse messages without it, or drops messages that lack it.
fn same_required_fields(
    old: &MessageDescriptor,
    new: &MessageDescriptor,
    out: &mut Vec<Violation>,
) {
    let required = |message: &MessageDescriptor, number| {
        message.get_field(number).is_some_and(|f| f.is_required())
    };
    for field in old
        .fields()
        .filter(|f| f.is_required() && !required(new, f.number()))
    {
        let message = format!(
            "required field {} ({}) deleted",
            field.number(),
            field.name()
        );
        let rule = rules::MESSAGE_SAME_REQUIRED_FIELDS;
        out.push(Violation::new(
            rule,
            field.full_name(),
            new.location(),
            message,
        ));
    }
    for field in new
        .fields()
        .filter(|f| f.is_required() && !required(old, f.number()))
    {
        let message = format!("required field {} ({}) added", field.number(), field.name());
        let rule = rules::MESSAGE_SAME_REQUIRED_FIELDS;
        out.push(Violation::new(
            rule,
            field.full_name(),
            field.location(),
            message,
        ));
    }
}

fn check_enum(old: &EnumDescriptor, new: &EnumDescriptor, json: bool, out: &mut Vec<Violation>) {
    let new_reserved = Reserved::of_enum(new);
    let new_values = enum_values::by_number(new);
    for (number, old_aliases) in enum_values::by_number(old) {
        let Some(new_aliases) = new_values.get(&number) else {
            let deleted = |rule, what| {
                let message = format!("value {number} deleted without reserving its {what}");
                Violation::new(
                    rule,
                    enum_values::qualified_name(&old_aliases[0]),
                    new.location(),
                    message,
                )
            };
            if !new_reserved.has_number(number) {
                out.push(deleted(
                    rules::ENUM_VALUE_NO_DELETE_UNLESS_NUMBER_RESERVED,
                    "number",
                ));
            }
            if json && !old_aliases.iter().all(|v| new_reserved.has_name(v.name())) {
                out.push(deleted(
                    rules::ENUM_VALUE_NO_DELETE_UNLESS_NAME_RESERVED,
                    "name",
                ));
            }
            continue;
        };
        // JSON carries value names, and existing data may use any of them:
        // aliases can be added, but no name can go.
        let kept_names = old_aliases
            .iter()
            .all(|old_value| new_aliases.iter().any(|v| v.name() == old_value.name()));
        if json && !kept_names {
            let new_value = &new_aliases[0];
            out.push(Violation::new(
                rules::ENUM_VALUE_SAME_NAME,
                enum_values::qualified_name(new_value),
                new_value.location(),
                format!(
                    "value {number} renamed from {} to {}",
                    enum_values::names(&old_aliases),
                    enum_values::names(new_aliases)
                ),
            ));
        }
    }
    for dropped in new_reserved.dropped_since(&Reserved::of_enum(old)) {
        out.push(Violation::new(
            rules::RESERVED_ENUM_NO_DELETE,
            new.full_name(),
            new.location(),
            format!("{dropped} deleted"),
        ));
    }
    if json && lost_json_format(&old.parent_file(), &new.parent_file()) {
        out.push(Violation::new(
            rules::ENUM_SAME_JSON_FORMAT,
            new.full_name(),
            new.location(),
            LOST_JSON_FORMAT.to_owned(),
        ));
    }
}

const LOST_JSON_FORMAT: &str = "JSON format support changed from ALLOW to LEGACY_BEST_EFFORT";

/// Without editions, a message or enum supports JSON fully (`ALLOW`) in
/// proto3 files and only on a best-effort basis in proto2 files.
fn lost_json_format(old: &FileDescriptor, new: &FileDescriptor) -> bool {
    old.syntax() == Syntax::Proto3 && new.syntax() == Syntax::Proto2
}

fn check_service(old: &ServiceDescriptor, new: &ServiceDescriptor, out: &mut Vec<Violation>) {
    for old_method in old.methods() {
        if let Some(new_method) = new.methods().find(|m| m.name() == old_method.name()) {
            check_method(&old_method, &new_method, out);
        }
    }
}

/// The `RPC_SAME_*` rules: clients and servers must agree on the call shape.
fn check_method(old: &MethodDescriptor, new: &MethodDescriptor, out: &mut Vec<Violation>) {
    let streaming = |streams: bool| if streams { "streaming" } else { "unary" };
    let checks = [
        (
            rules::RPC_SAME_REQUEST_TYPE,
            "request type",
            old.input().full_name().to_owned(),
            new.input().full_name().to_owned(),
        ),
        (
            rules::RPC_SAME_RESPONSE_TYPE,
            "response type",
            old.output().full_name().to_owned(),
            new.output().full_name().to_owned(),
        ),
        (
            rules::RPC_SAME_CLIENT_STREAMING,
            "client side",
            streaming(old.is_client_streaming()).to_owned(),
            streaming(new.is_client_streaming()).to_owned(),
        ),
        (
            rules::RPC_SAME_SERVER_STREAMING,
            "server side",
            streaming(old.is_server_streaming()).to_owned(),
            streaming(new.is_server_streaming()).to_owned(),
        ),
        (
            rules::RPC_SAME_IDEMPOTENCY_LEVEL,
            "idempotency level",
            idempotency_level(old),
            idempotency_level(new),
        ),
    ];
    for (rule, what, before, after) in checks {
        if before != after {
            out.push(Violation::new(
                rule,
                new.full_name(),
                new.location(),
                format!("{what} changed from {before} to {after}"),
            ));
        }
    }
}

fn idempotency_level(method: &MethodDescriptor) -> String {
    let level = method
        .method_descriptor_proto()
        .options
        .as_ref()
        .map_or(0, |options| options.idempotency_level.unwrap_or(0));
    IdempotencyLevel::try_from(level)
        .map_or_else(|_| level.to_string(), |l| l.as_str_name().to_owned())
}
