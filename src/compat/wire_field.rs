//! buf's field rules for the `WIRE` and `WIRE_JSON` categories, applied to a
//! message field or an extension and its counterpart with the same number.

use std::fmt;

use prost_reflect::{ExtensionDescriptor, FieldDescriptor, Kind, Value};

use super::Violation;
use super::location::{Located, Site};
use super::rules;

/// What the field rules look at, for a message field or an extension.
pub(super) struct FieldView {
    /// Fully-qualified name.
    element: String,
    /// The name buf compares: extensions are known by their full name.
    name: String,
    /// `None` for extensions, which cannot set a JSON name.
    json_name: Option<String>,
    kind: Kind,
    is_group: bool,
    cardinality: Cardinality,
    /// The enclosing real (non-synthetic) oneof.
    oneof: Option<String>,
    in_map_entry: bool,
    /// `None` for fields that cannot have a default (messages, lists, maps).
    default: Option<DefaultValue>,
    location: Option<Site>,
}

/// Fills in the parts of a [`FieldView`] read through the accessors that
/// `FieldDescriptor` and `ExtensionDescriptor` share.
macro_rules! field_view {
    (
        $field:expr,
        name: $name:expr,
        json_name: $json_name:expr,
        oneof: $oneof:expr,
        in_map_entry: $in_map_entry:expr $(,)?
    ) => {{
        let field = $field;
        FieldView {
            element: field.full_name().to_owned(),
            name: $name,
            json_name: $json_name,
            is_group: field.is_group(),
            cardinality: Cardinality::new(
                field.is_map(),
                field.cardinality(),
                field.supports_presence(),
            ),
            oneof: $oneof,
            in_map_entry: $in_map_entry,
            kind: field.kind(),
            default: DefaultValue::of(&field.default_value()),
            location: field.location(),
        }
    }};
}

impl FieldView {
    pub fn of_field(field: &FieldDescriptor) -> Self {
        field_view!(
            field,
            name: field.name().to_owned(),
            json_name: Some(field.json_name().to_owned()),
            oneof: field
                .containing_oneof()
                .filter(|oneof| !oneof.is_synthetic())
                .map(|oneof| oneof.name().to_owned()),
            in_map_entry: field.parent_message().is_map_entry(),
        )
    }

    pub fn of_extension(extension: &ExtensionDescriptor) -> Self {
        field_view!(
            extension,
            name: extension.full_name().to_owned(),
            json_name: None,
            oneof: None,
            in_map_entry: false,
        )
    }

    fn violation(&self, rule: &'static str, message: String) -> Violation {
        Violation::new(rule, &*self.element, self.location.clone(), message)
    }
}

/// Applies every field rule of the category to a field and its new version.
pub(super) fn check(old: &FieldView, new: &FieldView, json: bool, out: &mut Vec<Violation>) {
    let found = [
        compatible_type(old, new, json),
        compatible_cardinality(old, new, json),
        same_oneof(old, new),
        same_default(old, new),
    ];
    out.extend(found.into_iter().flatten());
    if json {
        out.extend(same_name(old, new));
        out.extend(same_json_name(old, new));
    }
}

/// `FIELD_WIRE_COMPATIBLE_TYPE` / `FIELD_WIRE_JSON_COMPATIBLE_TYPE`.
fn compatible_type(old: &FieldView, new: &FieldView, json: bool) -> Option<Violation> {
    let group: fn(&FieldView) -> &str = if json { wire_json_group } else { wire_group };
    let changed = || {
        let rule = if json {
            rules::FIELD_WIRE_JSON_COMPATIBLE_TYPE
        } else {
            rules::FIELD_WIRE_COMPATIBLE_TYPE
        };
        let message = format!("type changed from {} to {}", type_name(old), type_name(new));
        Some(new.violation(rule, message))
    };
    if group(old) != group(new) {
        // Any string is valid bytes, but not the other way around.
        let string_to_bytes = matches!((&old.kind, &new.kind), (Kind::String, Kind::Bytes));
        return if !json && string_to_bytes {
            None
        } else {
            changed()
        };
    }
    match (&old.kind, &new.kind) {
        // Like buf, by name: even a renamed map (whose entry is renamed) or
        // group counts, though their encoding does not change.
        (Kind::Message(old_type), Kind::Message(new_type))
            if old_type.full_name() != new_type.full_name() =>
        {
            changed()
        }
        // A different enum is accepted when it only looks renamed by package
        // or nesting: same short name, and every old value (by name) keeps
        // its number, so the numbers on the wire mean the same thing.
        (Kind::Enum(old_type), Kind::Enum(new_type))
            if old_type.full_name() != new_type.full_name() =>
        {
            let same_values = old_type.values().all(|value| {
                new_type
                    .get_value_by_name(value.name())
                    .is_some_and(|v| v.number() == value.number())
            });
            if old_type.name() == new_type.name() && same_values {
                None
            } else {
                changed()
            }
        }
        _ => None,
    }
}

/// Kinds within a group share an encoding on the wire.
fn wire_group(field: &FieldView) -> &'static str {
    match &field.kind {
        Kind::Int32 | Kind::Int64 | Kind::Uint32 | Kind::Uint64 | Kind::Bool => "varint",
        Kind::Sint32 | Kind::Sint64 => "zigzag",
        Kind::Fixed32 | Kind::Sfixed32 => "fixed32",
        Kind::Fixed64 | Kind::Sfixed64 => "fixed64",
        // Bytes could hold a serialized message, and an int32 a valid enum
        // number, but nothing guarantees it, so those stay apart.
        _ => kind_name(field),
    }
}

/// Kinds within a group share an encoding both on the wire and in JSON
/// (where 64-bit integers are strings and bools are not numbers).
fn wire_json_group(field: &FieldView) -> &'static str {
    match &field.kind {
        Kind::Int32 | Kind::Uint32 => "int32",
        Kind::Int64 | Kind::Uint64 => "int64",
        Kind::Fixed32 | Kind::Sfixed32 => "fixed32",
        Kind::Fixed64 | Kind::Sfixed64 => "fixed64",
        _ => kind_name(field),
    }
}

fn kind_name(field: &FieldView) -> &'static str {
    match &field.kind {
        Kind::Double => "double",
        Kind::Float => "float",
        Kind::Int32 => "int32",
        Kind::Int64 => "int64",
        Kind::Uint32 => "uint32",
        Kind::Uint64 => "uint64",
        Kind::Sint32 => "sint32",
        Kind::Sint64 => "sint64",
        Kind::Fixed32 => "fixed32",
        Kind::Fixed64 => "fixed64",
        Kind::Sfixed32 => "sfixed32",
        Kind::Sfixed64 => "sfixed64",
        Kind::Bool => "bool",
        Kind::String => "string",
        Kind::Bytes => "bytes",
        Kind::Message(_) if field.is_group => "group",
        Kind::Message(_) => "message",
        Kind::Enum(_) => "enum",
    }
}

fn type_name(field: &FieldView) -> String {
    match &field.kind {
        Kind::Message(message) => format!("{} {}", kind_name(field), message.full_name()),
        Kind::Enum(enum_) => format!("enum {}", enum_.full_name()),
        _ => kind_name(field).to_owned(),
    }
}

/// A field's cardinality as buf distinguishes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cardinality {
    ExplicitPresence,
    ImplicitPresence,
    Required,
    Repeated,
    Map,
}

impl Cardinality {
    fn new(is_map: bool, cardinality: prost_reflect::Cardinality, has_presence: bool) -> Self {
        match cardinality {
            prost_reflect::Cardinality::Repeated if is_map => Cardinality::Map,
            prost_reflect::Cardinality::Repeated => Cardinality::Repeated,
            prost_reflect::Cardinality::Required => Cardinality::Required,
            prost_reflect::Cardinality::Optional if has_presence => Cardinality::ExplicitPresence,
            prost_reflect::Cardinality::Optional => Cardinality::ImplicitPresence,
        }
    }

    /// Cardinalities within a group decode each other's data. Presence does
    /// not matter on the wire, and a repeated field (packed or not) reads a
    /// map's entries; in JSON, maps are objects and repeated fields arrays.
    fn group(self, json: bool) -> u8 {
        match self {
            Cardinality::ExplicitPresence | Cardinality::ImplicitPresence => 0,
            Cardinality::Required => 1,
            Cardinality::Map if json => 3,
            Cardinality::Repeated | Cardinality::Map => 2,
        }
    }
}

impl fmt::Display for Cardinality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Cardinality::ExplicitPresence => "optional with explicit presence",
            Cardinality::ImplicitPresence => "optional with implicit presence",
            Cardinality::Required => "required",
            Cardinality::Repeated => "repeated",
            Cardinality::Map => "map",
        })
    }
}

/// `FIELD_WIRE_COMPATIBLE_CARDINALITY` / `FIELD_WIRE_JSON_COMPATIBLE_CARDINALITY`.
fn compatible_cardinality(old: &FieldView, new: &FieldView, json: bool) -> Option<Violation> {
    // Map entries are generated; their fields' presence is meaningless.
    if old.in_map_entry && new.in_map_entry {
        return None;
    }
    if old.cardinality.group(json) == new.cardinality.group(json) {
        return None;
    }
    let rule = if json {
        rules::FIELD_WIRE_JSON_COMPATIBLE_CARDINALITY
    } else {
        rules::FIELD_WIRE_COMPATIBLE_CARDINALITY
    };
    Some(new.violation(
        rule,
        format!(
            "cardinality changed from {} to {}",
            old.cardinality, new.cardinality
        ),
    ))
}

/// `FIELD_SAME_ONEOF`: a oneof member set on the wire clears its siblings.
fn same_oneof(old: &FieldView, new: &FieldView) -> Option<Violation> {
    let message = match (&old.oneof, &new.oneof) {
        (Some(old_oneof), Some(new_oneof)) if old_oneof != new_oneof => {
            format!("moved from oneof {old_oneof} to oneof {new_oneof}")
        }
        (Some(old_oneof), None) => format!("moved out of oneof {old_oneof}"),
        (None, Some(new_oneof)) => format!("moved into oneof {new_oneof}"),
        _ => return None,
    };
    Some(new.violation(rules::FIELD_SAME_ONEOF, message))
}

/// `FIELD_SAME_DEFAULT`: readers fill in absent fields with their default.
fn same_default(old: &FieldView, new: &FieldView) -> Option<Violation> {
    let (old_default, new_default) = (old.default.as_ref()?, new.default.as_ref()?);
    if (old_default.is_zero() && new_default.is_zero()) || old_default.same_as(new_default) {
        return None;
    }
    Some(new.violation(
        rules::FIELD_SAME_DEFAULT,
        format!("default value changed from {old_default} to {new_default}"),
    ))
}

/// A default value as buf compares it: strings and bytes by content, every
/// other kind (bools and enums included) as a number.
enum DefaultValue {
    Text(Vec<u8>),
    Integer(i128),
    Float(f32),
    Double(f64),
}

impl DefaultValue {
    /// `None` for messages, lists and maps, which have no default.
    fn of(value: &Value) -> Option<Self> {
        Some(match value {
            Value::String(s) => DefaultValue::Text(s.as_bytes().to_vec()),
            Value::Bytes(b) => DefaultValue::Text(b.to_vec()),
            Value::Bool(b) => DefaultValue::Integer(i128::from(*b)),
            Value::I32(n) | Value::EnumNumber(n) => DefaultValue::Integer(i128::from(*n)),
            Value::I64(n) => DefaultValue::Integer(i128::from(*n)),
            Value::U32(n) => DefaultValue::Integer(i128::from(*n)),
            Value::U64(n) => DefaultValue::Integer(i128::from(*n)),
            Value::F32(x) => DefaultValue::Float(*x),
            Value::F64(x) => DefaultValue::Double(*x),
            Value::Message(_) | Value::List(_) | Value::Map(_) => return None,
        })
    }

    fn is_zero(&self) -> bool {
        match self {
            DefaultValue::Text(bytes) => bytes.is_empty(),
            DefaultValue::Integer(n) => *n == 0,
            // Like Go's reflect.Value.IsZero, -0.0 is not zero.
            DefaultValue::Float(x) => x.to_bits() == 0,
            DefaultValue::Double(x) => x.to_bits() == 0,
        }
    }

    fn same_as(&self, other: &DefaultValue) -> bool {
        use DefaultValue::*;
        match (self, other) {
            (Text(a), Text(b)) => a == b,
            (Text(_), _) | (_, Text(_)) => false,
            // A float widened to double (or back) keeps its float value.
            (Float(a), Double(b)) | (Double(b), Float(a)) => same_float(*a, *b as f32),
            (Float(a), Float(b)) => same_float(*a, *b),
            (Double(a), Double(b)) => same_float(*a, *b),
            (Integer(a), Integer(b)) => a == b,
            (Integer(n), Float(x)) | (Float(x), Integer(n)) => same_number(*n, f64::from(*x)),
            (Integer(n), Double(x)) | (Double(x), Integer(n)) => same_number(*n, *x),
        }
    }
}

impl fmt::Display for DefaultValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DefaultValue::Text(bytes) => write!(f, "{:?}", String::from_utf8_lossy(bytes)),
            DefaultValue::Integer(n) => write!(f, "{n}"),
            DefaultValue::Float(x) => write!(f, "{x}"),
            DefaultValue::Double(x) => write!(f, "{x}"),
        }
    }
}

fn same_float<T: Into<f64>>(a: T, b: T) -> bool {
    let (a, b) = (a.into(), b.into());
    a == b || (a.is_nan() && b.is_nan())
}

/// Exact comparison; `fract` is NaN for infinities and NaN.
fn same_number(n: i128, x: f64) -> bool {
    x.fract() == 0.0 && x as i128 == n
}

/// `FIELD_SAME_NAME` (`WIRE_JSON`): JSON parsers also accept the field name.
fn same_name(old: &FieldView, new: &FieldView) -> Option<Violation> {
    (old.name != new.name).then(|| {
        new.violation(
            rules::FIELD_SAME_NAME,
            format!("name changed from {} to {}", old.name, new.name),
        )
    })
}

/// `FIELD_SAME_JSON_NAME` (`WIRE_JSON`), comparing effective JSON names.
fn same_json_name(old: &FieldView, new: &FieldView) -> Option<Violation> {
    let (old_name, new_name) = (old.json_name.as_ref()?, new.json_name.as_ref()?);
    (old_name != new_name).then(|| {
        new.violation(
            rules::FIELD_SAME_JSON_NAME,
            format!("JSON name changed from {old_name} to {new_name}"),
        )
    })
}
