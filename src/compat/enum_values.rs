//! Enum values as the rules see them: by number, aliases together.

use std::collections::BTreeMap;

use prost_reflect::{EnumDescriptor, EnumValueDescriptor};

/// Enum values grouped by number (aliases share one), in number order.
pub(super) fn by_number(enum_: &EnumDescriptor) -> BTreeMap<i32, Vec<EnumValueDescriptor>> {
    let mut map: BTreeMap<i32, Vec<EnumValueDescriptor>> = BTreeMap::new();
    for value in enum_.values() {
        map.entry(value.number()).or_default().push(value);
    }
    map
}

/// The value's name qualified by its enum (`pkg.Enum.VALUE`), rather than by
/// the enum's parent scope as protobuf does, to point at the right enum.
pub(super) fn qualified_name(value: &EnumValueDescriptor) -> String {
    format!("{}.{}", value.parent_enum().full_name(), value.name())
}

/// The names of aliases, for messages.
pub(super) fn names(values: &[EnumValueDescriptor]) -> String {
    let names: Vec<&str> = values.iter().map(EnumValueDescriptor::name).collect();
    names.join(", ")
}
