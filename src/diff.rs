//! What changed between two versions of a schema: its files, as unified
//! source diffs, and its definitions (messages, fields, enums, enum values,
//! services, methods), compared by what identifies them on the wire (a
//! field by its number, an enum value by its number, a method by its name).
//! Only the schema's own files are compared; its imports are other schemas.

use std::collections::BTreeMap;

use prost_reflect::{
    Cardinality, DescriptorPool, EnumDescriptor, FieldDescriptor, Kind, MessageDescriptor,
    MethodDescriptor,
};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Added,
    Removed,
    Changed,
}

impl Change {
    /// The one-character mark of a diff line.
    pub fn mark(self) -> char {
        match self {
            Change::Added => '+',
            Change::Removed => '-',
            Change::Changed => '~',
        }
    }
}

/// A file added, removed or changed, with its unified diff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileDiff {
    pub path: String,
    pub change: Change,
    pub unified: String,
}

/// What kind of definition changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Element {
    Message,
    Field,
    Enum,
    EnumValue,
    Service,
    Method,
}

impl Element {
    pub fn label(self) -> &'static str {
        match self {
            Element::Message => "message",
            Element::Field => "field",
            Element::Enum => "enum",
            Element::EnumValue => "enum value",
            Element::Service => "service",
            Element::Method => "method",
        }
    }
}

/// One definition added, removed or changed. `before` and `after` are its
/// declaration as protoshelf renders it (`optional string note = 5`), absent
/// on the side it does not exist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DefinitionDiff {
    pub element: Element,
    pub name: String,
    pub change: Change,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

/// The files of `from` and `to` (path, content), in path order.
pub fn files(from: &[(&str, &[u8])], to: &[(&str, &[u8])]) -> Vec<FileDiff> {
    // Each path's content before and after.
    type Sides<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);
    let mut paths: BTreeMap<&str, Sides> = BTreeMap::new();
    for (path, bytes) in from {
        paths.entry(path).or_default().0 = Some(bytes);
    }
    for (path, bytes) in to {
        paths.entry(path).or_default().1 = Some(bytes);
    }
    paths
        .into_iter()
        .filter_map(|(path, sides)| {
            let change = match sides {
                (Some(a), Some(b)) if a == b => return None,
                (Some(_), Some(_)) => Change::Changed,
                (None, _) => Change::Added,
                (_, None) => Change::Removed,
            };
            let text =
                |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
            let (a, b) = (text(sides.0), text(sides.1));
            let unified = similar::TextDiff::from_lines(&a, &b)
                .unified_diff()
                .context_radius(3)
                .header(
                    &if sides.0.is_some() {
                        format!("a/{path}")
                    } else {
                        "/dev/null".into()
                    },
                    &if sides.1.is_some() {
                        format!("b/{path}")
                    } else {
                        "/dev/null".into()
                    },
                )
                .to_string();
            Some(FileDiff {
                path: path.to_string(),
                change,
                unified,
            })
        })
        .collect()
}

/// The definitions of the files `from_files` of `from` against those of
/// `to_files` of `to`, in element then name order.
pub fn definitions(
    from: &DescriptorPool,
    from_files: &[String],
    to: &DescriptorPool,
    to_files: &[String],
) -> Vec<DefinitionDiff> {
    let (before, after) = (declarations(from, from_files), declarations(to, to_files));
    let mut keys: Vec<_> = before.keys().chain(after.keys()).cloned().collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|key| {
            let (b, a) = (before.get(&key), after.get(&key));
            let change = match (b, a) {
                (Some(b), Some(a)) if b.1 == a.1 => return None,
                (Some(_), Some(_)) => Change::Changed,
                (None, _) => Change::Added,
                (_, None) => Change::Removed,
            };
            // The name as it is now, or as it was for a removal.
            let name = a.or(b).map(|d| d.0.clone()).unwrap_or_default();
            Some(DefinitionDiff {
                element: key.0,
                name,
                change,
                before: b.map(|d| d.1.clone()),
                after: a.map(|d| d.1.clone()),
            })
        })
        .collect()
}

/// Identity → (display name, declaration) of every definition in `files`.
type Declarations = BTreeMap<(Element, String), (String, String)>;

fn declarations(pool: &DescriptorPool, files: &[String]) -> Declarations {
    let mut out = Declarations::new();
    for file in pool.files().filter(|f| files.iter().any(|p| p == f.name())) {
        for m in file.messages() {
            message(&m, &mut out);
        }
        for e in file.enums() {
            enumeration(&e, &mut out);
        }
        for s in file.services() {
            let name = s.full_name().to_string();
            out.insert(
                (Element::Service, name.clone()),
                (name.clone(), format!("service {}", s.name())),
            );
            for m in s.methods() {
                let id = format!("{name}.{}", m.name());
                out.insert((Element::Method, id.clone()), (id, method(&m)));
            }
        }
    }
    out
}

fn message(m: &MessageDescriptor, out: &mut Declarations) {
    // Map entries are rendered as the map field that declares them.
    if m.is_map_entry() {
        return;
    }
    let name = m.full_name().to_string();
    out.insert(
        (Element::Message, name.clone()),
        (name.clone(), format!("message {}", m.name())),
    );
    for f in m.fields() {
        // Zero-padded so fields sort by number within their message.
        let id = format!("{name}#{:010}", f.number());
        out.insert(
            (Element::Field, id),
            (format!("{name}.{}", f.name()), field(&f)),
        );
    }
    for nested in m.child_messages() {
        message(&nested, out);
    }
    for e in m.child_enums() {
        enumeration(&e, out);
    }
}

fn enumeration(e: &EnumDescriptor, out: &mut Declarations) {
    let name = e.full_name().to_string();
    out.insert(
        (Element::Enum, name.clone()),
        (name.clone(), format!("enum {}", e.name())),
    );
    // Aliases share a number: one entry per number, naming each alias.
    let mut by_number: BTreeMap<i32, Vec<&str>> = BTreeMap::new();
    let values: Vec<_> = e.values().collect();
    for v in &values {
        by_number.entry(v.number()).or_default().push(v.name());
    }
    for (number, names) in by_number {
        let id = format!("{name}#{:+011}", number);
        out.insert(
            (Element::EnumValue, id),
            (
                format!("{name}.{}", names[0]),
                format!("{} = {number}", names.join(" / ")),
            ),
        );
    }
}

fn field(f: &FieldDescriptor) -> String {
    let ty = if f.is_map() {
        let Kind::Message(entry) = f.kind() else {
            unreachable!("a map field's type is its entry message")
        };
        format!(
            "map<{}, {}>",
            type_name(&entry.map_entry_key_field()),
            type_name(&entry.map_entry_value_field())
        )
    } else {
        type_name(f)
    };
    let proto = f.field_descriptor_proto();
    let label = match f.cardinality() {
        _ if f.is_map() => "",
        Cardinality::Repeated => "repeated ",
        Cardinality::Required => "required ",
        Cardinality::Optional if proto.proto3_optional() => "optional ",
        Cardinality::Optional if f.parent_file().syntax() == prost_reflect::Syntax::Proto2 => {
            "optional "
        }
        Cardinality::Optional => "",
    };
    let oneof = match f.containing_oneof() {
        Some(o) if !proto.proto3_optional() => format!(" (in oneof {})", o.name()),
        _ => String::new(),
    };
    let json = match proto.json_name.as_deref() {
        Some(j) if j != f.json_name() => format!(" [json_name = {j:?}]"),
        _ => String::new(),
    };
    format!("{label}{ty} {} = {}{json}{oneof}", f.name(), f.number())
}

fn type_name(f: &FieldDescriptor) -> String {
    match f.kind() {
        Kind::Message(m) if f.is_group() => format!("group {}", m.full_name()),
        Kind::Message(m) => m.full_name().to_string(),
        Kind::Enum(e) => e.full_name().to_string(),
        scalar => format!("{scalar:?}").to_lowercase(),
    }
}

fn method(m: &MethodDescriptor) -> String {
    let stream = |yes: bool| if yes { "stream " } else { "" };
    format!(
        "rpc {}({}{}) returns ({}{})",
        m.name(),
        stream(m.is_client_streaming()),
        m.input().full_name(),
        stream(m.is_server_streaming()),
        m.output().full_name()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_support::compile as pool;

    const V1: &str = r#"syntax = "proto3";
package shop;
message Order {
  string id = 1;
  int64 total = 2;
  map<string, string> labels = 3;
  oneof pay { string card = 4; }
}
enum State { STATE_UNSPECIFIED = 0; OPEN = 1; }
service Orders { rpc Get(Order) returns (Order); }
"#;
    const V2: &str = r#"syntax = "proto3";
package shop;
message Order {
  string id = 1;
  string total = 2;
  map<string, string> labels = 3;
  optional string note = 5;
  message Line { int32 qty = 1; }
}
enum State { STATE_UNSPECIFIED = 0; OPEN = 1; CLOSED = 2; }
service Orders { rpc Get(Order) returns (stream Order); }
"#;

    #[test]
    fn definitions_name_each_change_by_wire_identity() {
        let files = vec!["shop.proto".to_string()];
        let d = definitions(
            &pool(&[("shop.proto", V1)]),
            &files,
            &pool(&[("shop.proto", V2)]),
            &files,
        );
        let got: Vec<_> = d
            .iter()
            .map(|d| format!("{} {} {}", d.change.mark(), d.element.label(), d.name))
            .collect();
        assert_eq!(
            got,
            [
                "+ message shop.Order.Line",
                "~ field shop.Order.total",
                "- field shop.Order.card",
                "+ field shop.Order.note",
                "+ field shop.Order.Line.qty",
                "+ enum value shop.State.CLOSED",
                "~ method shop.Orders.Get",
            ]
        );
        let total = &d[1];
        assert_eq!(total.before.as_deref(), Some("int64 total = 2"));
        assert_eq!(total.after.as_deref(), Some("string total = 2"));
        assert_eq!(
            d[2].before.as_deref(),
            Some("string card = 4 (in oneof pay)")
        );
        assert_eq!(d[3].after.as_deref(), Some("optional string note = 5"));
        assert_eq!(
            d[6].after.as_deref(),
            Some("rpc Get(shop.Order) returns (stream shop.Order)")
        );
    }

    #[test]
    fn same_versions_have_no_differences() {
        let files = vec!["shop.proto".to_string()];
        let p = pool(&[("shop.proto", V1)]);
        assert!(definitions(&p, &files, &p, &files).is_empty());
        let f = [("shop.proto", V1.as_bytes())];
        assert!(self::files(&f, &f).is_empty());
    }

    #[test]
    fn files_are_added_removed_and_changed_with_unified_diffs() {
        let from = [
            ("a.proto", V1.as_bytes()),
            ("gone.proto", b"x\n".as_slice()),
        ];
        let to = [("a.proto", V2.as_bytes()), ("new.proto", b"y\n".as_slice())];
        let d = files(&from, &to);
        let kinds: Vec<_> = d.iter().map(|f| (f.path.as_str(), f.change)).collect();
        assert_eq!(
            kinds,
            [
                ("a.proto", Change::Changed),
                ("gone.proto", Change::Removed),
                ("new.proto", Change::Added)
            ]
        );
        assert!(d[0].unified.starts_with("--- a/a.proto\n+++ b/a.proto\n@@"));
        assert!(
            d[0].unified
                .contains("-  int64 total = 2;\n+  string total = 2;\n")
        );
        assert!(d[1].unified.contains("+++ /dev/null"));
        assert!(d[2].unified.contains("--- /dev/null") && d[2].unified.contains("+y\n"));
    }
}
