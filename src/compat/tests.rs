//! Every rule both ways: an evolution that breaks it (checking the rule,
//! element and location reported) and a close one that is allowed.
//!
//! Sources are written as `proto3(r#"` or `proto2(r#"` followed by a body:
//! the helpers add the `syntax` and `package acme;` lines, so the first line
//! of the body is line 3 of `a.proto`. Most evolutions are a `replace` on
//! the old source, which keeps line numbers.

use prost_reflect::DescriptorPool;

use crate::test_support::compile;

use super::rules::*;
use super::{Location, Policy, Violation, check};

/// `body` starts with a newline, so its first line is line 3.
fn proto3(body: &str) -> String {
    format!("syntax = \"proto3\";\npackage acme;{body}\n")
}

fn proto2(body: &str) -> String {
    format!("syntax = \"proto2\";\npackage acme;{body}\n")
}

/// Checks a multi-file evolution; the schema is every file of `old`.
fn check_files(policy: Policy, old: &[(&str, &str)], new: &[(&str, &str)]) -> Vec<Violation> {
    let files: Vec<String> = old.iter().map(|(path, _)| path.to_string()).collect();
    check(policy, &compile(old), &compile(new), &files)
}

/// Checks an evolution of the single file `a.proto`.
fn check_one(policy: Policy, old: &str, new: &str) -> Vec<Violation> {
    check_files(policy, &[("a.proto", old)], &[("a.proto", new)])
}

/// Asserts that `violations` include `rule` for `element`, reported at
/// `location` ("file:line:column", or "" for none).
fn assert_reported(violations: &[Violation], rule: &str, element: &str, location: &str) {
    let Some(found) = violations.iter().find(|v| v.rule == rule) else {
        panic!("expected {rule}, got {violations:#?}");
    };
    assert_eq!(found.element, element, "{found}");
    let reported = found.location.as_ref().map(Location::to_string);
    assert_eq!(reported.as_deref().unwrap_or(""), location, "{found}");
}

fn breaks(policy: Policy, old: &str, new: &str, rule: &str, element: &str, location: &str) {
    assert_reported(&check_one(policy, old, new), rule, element, location);
}

fn allows(policy: Policy, old: &str, new: &str) {
    let violations = check_one(policy, old, new);
    assert!(
        violations.is_empty(),
        "expected no violations, got {violations:#?}"
    );
}

fn rules_of(violations: &[Violation]) -> Vec<&str> {
    violations.iter().map(|v| v.rule).collect()
}

const ORDER: &str = r#"
message Order {
  string id = 1;
  int64 amount = 2;
}"#;

/// A service (line 13) whose only RPC is on line 14.
const SERVICE: &str = r#"
message GetRequest {
  string id = 1;
}
message GetResponse {
  string id = 1;
}
message Other {
  string id = 1;
}

service Orders {
  rpc Get(GetRequest) returns (GetResponse);
}"#;

const STATUS: &str = r#"
enum Status {
  S_UNKNOWN = 0;
  S_OPEN = 1;
}"#;

mod api {
    use super::*;

    #[test]
    fn policy_names_round_trip() {
        for policy in [Policy::Strict, Policy::Wire, Policy::WireJson, Policy::None] {
            assert_eq!(policy.to_string().parse::<Policy>(), Ok(policy));
        }
        assert_eq!("wire_json".parse::<Policy>(), Ok(Policy::WireJson));
        assert!("WIRE".parse::<Policy>().is_err());
        assert_eq!(Policy::default(), Policy::Strict);
    }

    #[test]
    fn policy_deserializes_from_its_name() {
        use serde::Deserialize;
        use serde::de::value::{Error, StrDeserializer};
        let parsed = Policy::deserialize(StrDeserializer::<Error>::new("wire_json"));
        assert_eq!(parsed, Ok(Policy::WireJson));
    }

    #[test]
    fn policies_list_their_rules() {
        assert_eq!(Policy::Strict.rules().len(), 15);
        assert_eq!(Policy::Wire.rules().len(), 15);
        assert_eq!(Policy::WireJson.rules().len(), 22);
        assert!(Policy::None.rules().is_empty());
    }

    #[test]
    fn violation_display() {
        let old = proto3(ORDER);
        let new = old.replace("amount", "total");
        let violations = check_one(Policy::Strict, &old, &new);
        assert_eq!(
            violations[0].to_string(),
            "a.proto:5:3: FIELD_SAME_NAME: acme.Order.total: name changed from amount to total"
        );

        let other = proto3("\nmessage Other {}");
        let old = [("a.proto", old.as_str()), ("b.proto", other.as_str())];
        let deleted = check_files(Policy::Strict, &old, &old[..1]);
        assert_eq!(
            deleted[0].to_string(),
            "FILE_NO_DELETE: b.proto: file deleted"
        );
    }

    #[test]
    fn violations_are_sorted_by_file_line_column_then_rule() {
        let old = proto3(ORDER);
        let new = old
            .replace("string id", "bytes key")
            .replace("int64 amount", "int32 total");
        let order: Vec<String> = check_one(Policy::Strict, &old, &new)
            .iter()
            .map(|v| format!("{} {}", v.location.as_ref().unwrap(), v.rule))
            .collect();
        let expected = [
            "a.proto:4:3 FIELD_SAME_NAME",
            "a.proto:4:3 FIELD_SAME_TYPE",
            "a.proto:5:3 FIELD_SAME_NAME",
            "a.proto:5:3 FIELD_SAME_TYPE",
        ];
        assert_eq!(order, expected);
    }

    #[test]
    fn policy_none_reports_nothing() {
        let old = proto3(ORDER);
        assert!(check_files(Policy::None, &[("a.proto", &old)], &[]).is_empty());
    }

    #[test]
    fn only_the_schema_files_are_checked() {
        let dep = proto3("\nmessage Dep {\n  int64 x = 1;\n}");
        let own = proto3("\nimport \"dep.proto\";\nmessage Own {\n  Dep dep = 1;\n}");
        let old = compile(&[("dep.proto", &dep), ("own.proto", &own)]);
        let changed_dep = dep.replace("int64 x", "int64 y");
        let new = compile(&[("dep.proto", &changed_dep), ("own.proto", &own)]);

        let schema = ["own.proto".to_string()];
        assert!(check(Policy::Strict, &old, &new, &schema).is_empty());
        let everything = ["dep.proto".to_string(), "own.proto".to_string()];
        assert_eq!(check(Policy::Strict, &old, &new, &everything).len(), 1);
    }

    #[test]
    fn no_location_without_source_info() {
        let old = proto3(ORDER);
        let new = compile(&[("a.proto", &old.replace("amount", "total"))]);
        let mut files: Vec<_> = new.file_descriptor_protos().cloned().collect();
        files.iter_mut().for_each(|f| f.source_code_info = None);
        let set = prost_types::FileDescriptorSet { file: files };
        let new = DescriptorPool::from_file_descriptor_set(set).unwrap();

        let old = compile(&[("a.proto", &old)]);
        let violations = check(Policy::Strict, &old, &new, &["a.proto".into()]);
        assert_reported(&violations, FIELD_SAME_NAME, "acme.Order.total", "");
    }

    /// A pool without source info, with the set it came from: the
    /// locations are read from the set, the same as from a full pool.
    #[test]
    fn located_from_the_encoded_set() {
        let old = proto3(ORDER);
        let changed = old
            .replace("amount", "total")
            .replace("package acme;", "package acme2;");
        let full = compile(&[("a.proto", &changed)]);
        let encoded = full.encode_to_vec();
        let mut files: Vec<_> = full.file_descriptor_protos().cloned().collect();
        files.iter_mut().for_each(|f| f.source_code_info = None);
        let lean = DescriptorPool::from_file_descriptor_set(prost_types::FileDescriptorSet {
            file: files,
        })
        .unwrap();
        let old = compile(&[("a.proto", &old)]);
        let files = ["a.proto".to_string()];
        for policy in [Policy::Strict, Policy::Wire, Policy::WireJson] {
            let expected = check(policy, &old, &full, &files);
            assert!(!expected.is_empty() && expected.iter().all(|v| v.location.is_some()));
            let got = super::super::check_located(policy, &old, &lean, &files, Some(&encoded));
            let shown = |v: &[Violation]| v.iter().map(|v| v.to_string()).collect::<Vec<_>>();
            assert_eq!(shown(&got), shown(&expected), "{policy}");
        }
    }
}

mod strict {
    use super::*;

    const STRICT: Policy = Policy::Strict;

    #[test]
    fn file_no_delete() {
        let a = proto3(ORDER);
        let b = proto3("\nmessage Extra {}");
        let old = [("a.proto", a.as_str()), ("b.proto", b.as_str())];
        let violations = check_files(STRICT, &old, &old[..1]);
        assert_reported(&violations, FILE_NO_DELETE, "b.proto", "");
        // Its message is not reported on top.
        assert_eq!(rules_of(&violations), [FILE_NO_DELETE]);

        let c = proto3("\nmessage More {}");
        let new = [old[0], old[1], ("c.proto", c.as_str())];
        assert!(check_files(STRICT, &old, &new).is_empty());
    }

    #[test]
    fn message_no_delete() {
        let old = proto3(
            r#"
message Order {
  message Line {}
  message Gone {}
}
message Extra {}"#,
        );
        let new = old.replace("  message Gone {}\n", "");
        breaks(
            STRICT,
            &old,
            &new,
            MESSAGE_NO_DELETE,
            "acme.Order.Gone",
            "a.proto:3:1",
        );
        let new = old.replace("message Extra {}", "");
        breaks(
            STRICT,
            &old,
            &new,
            MESSAGE_NO_DELETE,
            "acme.Extra",
            "a.proto:1:1",
        );

        // Moving a message to another file keeps its full name.
        let extra = proto3("\nmessage Extra {}");
        let new = [("a.proto", new.as_str()), ("b.proto", extra.as_str())];
        assert!(check_files(STRICT, &[("a.proto", &old)], &new).is_empty());
    }

    #[test]
    fn field_no_delete() {
        let old = proto3(ORDER);
        let new = old.replace("  int64 amount = 2;\n", "");
        breaks(
            STRICT,
            &old,
            &new,
            FIELD_NO_DELETE,
            "acme.Order.amount",
            "a.proto:3:1",
        );
        let new = old.replace("int64 amount = 2;", "int64 amount = 2;\n  bool paid = 3;");
        allows(STRICT, &old, &new);
    }

    #[test]
    fn field_same_type() {
        let old = proto3(ORDER);
        let new = old.replace("int64 amount", "uint64 amount");
        breaks(
            STRICT,
            &old,
            &new,
            FIELD_SAME_TYPE,
            "acme.Order.amount",
            "a.proto:5:3",
        );
        allows(
            STRICT,
            &old,
            &old.replace("= 2;", "= 2 [deprecated = true];"),
        );
    }

    #[test]
    fn field_same_type_compares_map_keys_and_values() {
        let old = proto3("\nmessage Order {\n  map<string, int32> counts = 1;\n}");
        let new = old.replace("int32>", "int64>");
        let violations = check_one(STRICT, &old, &new);
        assert_reported(
            &violations,
            FIELD_SAME_TYPE,
            "acme.Order.counts",
            "a.proto:4:3",
        );
        assert_eq!(rules_of(&violations), [FIELD_SAME_TYPE]);
        // Renaming a map renames its entry message, which is no type change.
        let renamed = check_one(STRICT, &old, &old.replace("counts", "totals"));
        assert_eq!(rules_of(&renamed), [FIELD_SAME_NAME]);
    }

    #[test]
    fn field_same_name() {
        let old = proto3(ORDER);
        let new = old.replace("amount", "total");
        breaks(
            STRICT,
            &old,
            &new,
            FIELD_SAME_NAME,
            "acme.Order.total",
            "a.proto:5:3",
        );
        allows(
            STRICT,
            &old,
            &old.replace("= 2;", "= 2 [json_name = \"sum\"];"),
        );
    }

    #[test]
    fn field_same_cardinality() {
        let old = proto3(ORDER);
        let new = old.replace("int64 amount", "repeated int64 amount");
        let rule = FIELD_SAME_CARDINALITY;
        breaks(STRICT, &old, &new, rule, "acme.Order.amount", "a.proto:5:3");
        allows(
            STRICT,
            &old,
            &old.replace("int64 amount", "optional int64 amount"),
        );
    }

    #[test]
    fn field_same_message_type() {
        let old = proto3(
            r#"
message Order {
  Money total = 1;
}
message Money {
  int64 units = 1;
}
message Price {
  int64 units = 1;
}"#,
        );
        let new = old.replace("Money total", "Price total");
        let rule = FIELD_SAME_MESSAGE_TYPE;
        breaks(STRICT, &old, &new, rule, "acme.Order.total", "a.proto:4:3");
        let new = old.replace("int64 units = 1;", "int64 units = 1;\n  int32 nanos = 2;");
        allows(STRICT, &old, &new);
    }

    #[test]
    fn field_same_enum_type() {
        let old = proto3(
            r#"
message Order {
  Status status = 1;
}
enum Status {
  S_UNKNOWN = 0;
}
enum State {
  T_UNKNOWN = 0;
}"#,
        );
        let new = old.replace("Status status", "State status");
        let rule = FIELD_SAME_ENUM_TYPE;
        breaks(STRICT, &old, &new, rule, "acme.Order.status", "a.proto:4:3");
        allows(
            STRICT,
            &old,
            &old.replace("S_UNKNOWN = 0;", "S_UNKNOWN = 0;\n  S_OPEN = 1;"),
        );
    }

    #[test]
    fn enum_no_delete() {
        let old = proto3(
            r#"
enum Status {
  S_UNKNOWN = 0;
}
message Order {
  enum Kind {
    K_UNKNOWN = 0;
  }
}"#,
        );
        let new = old.replace("enum Status {\n  S_UNKNOWN = 0;\n}", "");
        breaks(
            STRICT,
            &old,
            &new,
            ENUM_NO_DELETE,
            "acme.Status",
            "a.proto:1:1",
        );
        let new = old.replace("  enum Kind {\n    K_UNKNOWN = 0;\n  }\n", "");
        breaks(
            STRICT,
            &old,
            &new,
            ENUM_NO_DELETE,
            "acme.Order.Kind",
            "a.proto:6:1",
        );
        allows(
            STRICT,
            &old,
            &old.replace("S_UNKNOWN = 0;", "S_UNKNOWN = 0;\n  S_OPEN = 1;"),
        );
    }

    #[test]
    fn enum_value_no_delete() {
        let old = proto3(STATUS);
        let new = old.replace("  S_OPEN = 1;\n", "");
        let rule = ENUM_VALUE_NO_DELETE;
        breaks(
            STRICT,
            &old,
            &new,
            rule,
            "acme.Status.S_OPEN",
            "a.proto:3:1",
        );
        // Values are matched by number, so renaming one is allowed.
        allows(STRICT, &old, &old.replace("S_OPEN", "S_ACTIVE"));
    }

    #[test]
    fn oneof_no_delete() {
        let old = proto3("\nmessage Order {\n  oneof contact {\n    string email = 1;\n  }\n}");
        let new = proto3("\nmessage Order {\n  string email = 1;\n}");
        let rule = ONEOF_NO_DELETE;
        breaks(
            STRICT,
            &old,
            &new,
            rule,
            "acme.Order.contact",
            "a.proto:3:1",
        );
        // A proto3 `optional` field's synthetic oneof is not a declared one.
        allows(
            STRICT,
            &new.replace("string email", "optional string email"),
            &new,
        );
    }

    #[test]
    fn service_no_delete() {
        let old = proto3(SERVICE);
        let new = old.replace(
            "service Orders {\n  rpc Get(GetRequest) returns (GetResponse);\n}",
            "",
        );
        breaks(
            STRICT,
            &old,
            &new,
            SERVICE_NO_DELETE,
            "acme.Orders",
            "a.proto:1:1",
        );
        let rpc = "rpc Get(GetRequest) returns (GetResponse);";
        let new = old.replace(
            rpc,
            &format!("{rpc}\n  rpc Put(GetRequest) returns (GetResponse);"),
        );
        allows(STRICT, &old, &new);
    }

    #[test]
    fn method_no_delete() {
        let old = proto3(SERVICE).replace("rpc Get", "rpc Put(Other) returns (Other);\n  rpc Get");
        let new = proto3(SERVICE);
        breaks(
            STRICT,
            &old,
            &new,
            METHOD_NO_DELETE,
            "acme.Orders.Put",
            "a.proto:13:1",
        );
        let new = old.replace(
            "(GetResponse);",
            "(GetResponse) {\n    option deprecated = true;\n  }",
        );
        allows(STRICT, &old, &new);
    }

    #[test]
    fn method_same_input_type() {
        let old = proto3(SERVICE);
        let new = old.replace("Get(GetRequest)", "Get(Other)");
        let rule = METHOD_SAME_INPUT_TYPE;
        breaks(STRICT, &old, &new, rule, "acme.Orders.Get", "a.proto:14:3");
        let grown = "message GetRequest {\n  string id = 1;\n  bool full = 2;";
        allows(
            STRICT,
            &old,
            &old.replace("message GetRequest {\n  string id = 1;", grown),
        );
    }

    #[test]
    fn method_same_output_type() {
        let old = proto3(SERVICE);
        let new = old.replace("returns (GetResponse)", "returns (Other)");
        let rule = METHOD_SAME_OUTPUT_TYPE;
        breaks(STRICT, &old, &new, rule, "acme.Orders.Get", "a.proto:14:3");
        let grown = "message GetResponse {\n  string id = 1;\n  bool found = 2;";
        allows(
            STRICT,
            &old,
            &old.replace("message GetResponse {\n  string id = 1;", grown),
        );
    }
}

mod wire {
    use super::*;

    const WIRE: Policy = Policy::Wire;
    const JSON: Policy = Policy::WireJson;

    /// A proto3 `Order` message with `fields` as its body, from line 4.
    fn order(fields: &str) -> String {
        proto3(&format!("\nmessage Order {{\n{fields}\n}}"))
    }

    fn order2(fields: &str) -> String {
        proto2(&format!("\nmessage Order {{\n{fields}\n}}"))
    }

    #[test]
    fn field_no_delete_unless_number_reserved() {
        let old = proto3(ORDER);
        let rule = FIELD_NO_DELETE_UNLESS_NUMBER_RESERVED;
        let deleted = |reserved| old.replace("int64 amount = 2;", reserved);
        let element = "acme.Order.amount";
        breaks(WIRE, &old, &deleted(""), rule, element, "a.proto:3:1");
        breaks(
            WIRE,
            &old,
            &deleted("reserved \"amount\";"),
            rule,
            element,
            "a.proto:3:1",
        );
        allows(WIRE, &old, &deleted("reserved 2 to 5;"));
    }

    #[test]
    fn field_no_delete_unless_name_reserved() {
        let old = proto3(ORDER);
        let rule = FIELD_NO_DELETE_UNLESS_NAME_RESERVED;
        let deleted = |reserved| old.replace("int64 amount = 2;", reserved);
        let element = "acme.Order.amount";
        breaks(
            JSON,
            &old,
            &deleted("reserved 2;"),
            rule,
            element,
            "a.proto:3:1",
        );
        allows(JSON, &old, &deleted("reserved 2;\n  reserved \"amount\";"));
    }

    #[test]
    fn enum_value_no_delete_unless_number_reserved() {
        let old = proto3(STATUS);
        let rule = ENUM_VALUE_NO_DELETE_UNLESS_NUMBER_RESERVED;
        let element = "acme.Status.S_OPEN";
        breaks(
            WIRE,
            &old,
            &old.replace("S_OPEN = 1;", ""),
            rule,
            element,
            "a.proto:3:1",
        );
        allows(WIRE, &old, &old.replace("S_OPEN = 1;", "reserved 1;"));
    }

    #[test]
    fn enum_value_no_delete_unless_name_reserved() {
        let old = proto3(STATUS);
        let rule = ENUM_VALUE_NO_DELETE_UNLESS_NAME_RESERVED;
        let deleted = |reserved| old.replace("S_OPEN = 1;", reserved);
        let element = "acme.Status.S_OPEN";
        breaks(
            JSON,
            &old,
            &deleted("reserved 1;"),
            rule,
            element,
            "a.proto:3:1",
        );
        allows(
            JSON,
            &old,
            &deleted("reserved 1 to max;\n  reserved \"S_OPEN\";"),
        );
    }

    #[test]
    fn field_wire_compatible_type() {
        let old = proto3(ORDER);
        let new = old.replace("int64 amount", "sint64 amount");
        let rule = FIELD_WIRE_COMPATIBLE_TYPE;
        breaks(WIRE, &old, &new, rule, "acme.Order.amount", "a.proto:5:3");
        let bytes = old.replace("string id", "bytes id");
        breaks(WIRE, &bytes, &old, rule, "acme.Order.id", "a.proto:4:3");
        // Same varint encoding; any string is valid bytes.
        let new = old.replace("int64 amount", "bool amount");
        allows(WIRE, &old, &new.replace("string id", "bytes id"));
    }

    #[test]
    fn field_wire_compatible_type_for_enums() {
        let old = proto3(
            r#"
message Order {
  Status status = 1;
}
enum Status {
  S_UNKNOWN = 0;
  S_OPEN = 1;
}"#,
        );
        // A nested enum with the same short name and a superset of the values.
        let nested = r#"
  Status status = 1;
  enum Status {
    S_UNKNOWN = 0;
    S_OPEN = 1;
    S_HELD = 2;
  }"#;
        allows(WIRE, &old, &order(nested));
        let renumbered = order(&nested.replace("S_OPEN = 1", "S_OPEN = 3"));
        let rule = FIELD_WIRE_COMPATIBLE_TYPE;
        breaks(
            WIRE,
            &old,
            &renumbered,
            rule,
            "acme.Order.status",
            "a.proto:5:3",
        );
    }

    #[test]
    fn field_wire_compatible_type_in_maps() {
        let old = order("  map<string, int32> counts = 1;");
        let new = old.replace("int32>", "sint32>");
        // Reported on the generated entry's field, located at the map field.
        let element = "acme.Order.CountsEntry.value";
        breaks(
            WIRE,
            &old,
            &new,
            FIELD_WIRE_COMPATIBLE_TYPE,
            element,
            "a.proto:4:3",
        );
        allows(WIRE, &old, &old.replace("int32>", "int64>"));
    }

    #[test]
    fn field_wire_compatible_type_on_extensions() {
        let old = proto2(
            r#"
message Base {
  extensions 100 to 199;
}
extend Base {
  optional int32 priority = 100;
}"#,
        );
        let new = old.replace("int32 priority", "sint32 priority");
        let rule = FIELD_WIRE_COMPATIBLE_TYPE;
        breaks(WIRE, &old, &new, rule, "acme.priority", "a.proto:7:3");
        allows(WIRE, &old, &old.replace("int32 priority", "int64 priority"));
    }

    #[test]
    fn field_wire_json_compatible_type() {
        let old = proto3(ORDER);
        let new = old.replace("int64 amount", "int32 amount");
        let rule = FIELD_WIRE_JSON_COMPATIBLE_TYPE;
        breaks(JSON, &old, &new, rule, "acme.Order.amount", "a.proto:5:3");
        allows(WIRE, &old, &new);
        allows(JSON, &old, &old.replace("int64 amount", "uint64 amount"));
    }

    #[test]
    fn field_wire_compatible_cardinality() {
        let old = proto3(ORDER);
        let new = old.replace("int64 amount", "repeated int64 amount");
        let rule = FIELD_WIRE_COMPATIBLE_CARDINALITY;
        breaks(WIRE, &old, &new, rule, "acme.Order.amount", "a.proto:5:3");
        // Presence and packing do not show on the wire.
        allows(
            WIRE,
            &old,
            &old.replace("int64 amount", "optional int64 amount"),
        );
        allows(WIRE, &new, &new.replace("= 2;", "= 2 [packed = false];"));
    }

    #[test]
    fn field_wire_json_compatible_cardinality() {
        let old = order("  map<string, int32> counts = 1;");
        let new = order(
            r#"  repeated CountsEntry counts = 1;
  message CountsEntry {
    string key = 1;
    int32 value = 2;
  }"#,
        );
        let rule = FIELD_WIRE_JSON_COMPATIBLE_CARDINALITY;
        breaks(JSON, &old, &new, rule, "acme.Order.counts", "a.proto:4:3");
        // On the wire, a map is a repeated entry message.
        allows(WIRE, &old, &new);
    }

    #[test]
    fn field_same_oneof() {
        let old = order("  string email = 1;\n  oneof contact {\n    string phone = 2;\n  }");
        let new = order("  oneof contact {\n    string email = 1;\n    string phone = 2;\n  }");
        breaks(
            WIRE,
            &old,
            &new,
            FIELD_SAME_ONEOF,
            "acme.Order.email",
            "a.proto:5:5",
        );
        allows(
            WIRE,
            &old,
            &old.replace("phone = 2;", "phone = 2;\n    string fax = 3;"),
        );
    }

    #[test]
    fn field_same_default() {
        let old = order2("  optional int32 qty = 1 [default = 1];");
        let new = old.replace("default = 1", "default = 2");
        breaks(
            WIRE,
            &old,
            &new,
            FIELD_SAME_DEFAULT,
            "acme.Order.qty",
            "a.proto:4:3",
        );
        // The same value, written for a wider type.
        allows(WIRE, &old, &old.replace("int32 qty", "int64 qty"));
        let implicit = old.replace(" [default = 1]", "");
        allows(WIRE, &implicit, &old.replace("default = 1", "default = 0"));
    }

    #[test]
    fn field_same_name() {
        let old = proto3(ORDER);
        let new = old.replace("amount = 2", "total = 2 [json_name = \"amount\"]");
        breaks(
            JSON,
            &old,
            &new,
            FIELD_SAME_NAME,
            "acme.Order.total",
            "a.proto:5:3",
        );
        allows(WIRE, &old, &new);
    }

    #[test]
    fn field_same_json_name() {
        let old = order("  int64 order_total = 1;");
        let new = old.replace("= 1;", "= 1 [json_name = \"total\"];");
        let rule = FIELD_SAME_JSON_NAME;
        breaks(
            JSON,
            &old,
            &new,
            rule,
            "acme.Order.order_total",
            "a.proto:4:3",
        );
        allows(
            JSON,
            &old,
            &old.replace("= 1;", "= 1 [json_name = \"orderTotal\"];"),
        );
    }

    #[test]
    fn file_same_package() {
        let old = proto3(ORDER);
        let new = old.replace("package acme;", "package acme.v2;");
        breaks(
            WIRE,
            &old,
            &new,
            FILE_SAME_PACKAGE,
            "a.proto",
            "a.proto:2:1",
        );
        let option = "package acme;\noption go_package = \"acme/v1\";";
        allows(WIRE, &old, &old.replace("package acme;", option));
    }

    #[test]
    fn message_same_required_fields() {
        let old = order2("  optional string id = 1;\n  optional int32 version = 2;");
        let required = old.replace("optional int32", "required int32");
        let rule = MESSAGE_SAME_REQUIRED_FIELDS;
        breaks(
            WIRE,
            &old,
            &required,
            rule,
            "acme.Order.version",
            "a.proto:5:3",
        );
        let deleted = required.replace("required int32 version = 2;", "reserved 2;");
        breaks(
            WIRE,
            &required,
            &deleted,
            rule,
            "acme.Order.version",
            "a.proto:3:1",
        );
        allows(
            WIRE,
            &old,
            &old.replace("= 2;", "= 2;\n  optional bool paid = 3;"),
        );
    }

    #[test]
    fn message_same_json_format() {
        let old = proto3(ORDER);
        let new = order2("  optional string id = 1;\n  optional int64 amount = 2;");
        breaks(
            JSON,
            &old,
            &new,
            MESSAGE_SAME_JSON_FORMAT,
            "acme.Order",
            "a.proto:3:1",
        );
        allows(JSON, &new, &new.replace("proto2", "proto3"));
    }

    #[test]
    fn enum_same_json_format() {
        let old = proto3(STATUS);
        let new = old.replace("proto3", "proto2");
        breaks(
            JSON,
            &old,
            &new,
            ENUM_SAME_JSON_FORMAT,
            "acme.Status",
            "a.proto:3:1",
        );
        allows(JSON, &new, &old);
    }

    #[test]
    fn enum_value_same_name() {
        let old = proto3(STATUS);
        let new = old.replace("S_OPEN", "S_ACTIVE");
        let rule = ENUM_VALUE_SAME_NAME;
        breaks(
            JSON,
            &old,
            &new,
            rule,
            "acme.Status.S_ACTIVE",
            "a.proto:5:3",
        );
        let alias = "option allow_alias = true;\n  S_OPEN = 1;\n  S_ACTIVE = 1;";
        let aliased = old.replace("S_OPEN = 1;", alias);
        allows(JSON, &old, &aliased);
        // Dropping an alias drops a name that old JSON may use.
        breaks(
            JSON,
            &aliased,
            &old,
            rule,
            "acme.Status.S_OPEN",
            "a.proto:5:3",
        );
    }

    #[test]
    fn reserved_message_no_delete() {
        let old = order("  string id = 1;\n  reserved 5 to 10;\n  reserved \"legacy\";");
        let rule = RESERVED_MESSAGE_NO_DELETE;
        let new = old.replace("\n  reserved \"legacy\";", "");
        breaks(WIRE, &old, &new, rule, "acme.Order", "a.proto:3:1");
        let new = old.replace("5 to 10", "5 to 9");
        breaks(WIRE, &old, &new, rule, "acme.Order", "a.proto:3:1");
        allows(WIRE, &old, &old.replace("5 to 10", "5 to 7, 8, 9 to 12"));
    }

    #[test]
    fn reserved_enum_no_delete() {
        let old = proto3(STATUS).replace("S_OPEN = 1;", "reserved 3 to 5;");
        let new = old.replace("reserved 3 to 5;", "");
        breaks(
            WIRE,
            &old,
            &new,
            RESERVED_ENUM_NO_DELETE,
            "acme.Status",
            "a.proto:3:1",
        );
        allows(
            WIRE,
            &old,
            &old.replace("3 to 5;", "2 to 6;\n  reserved \"S_OLD\";"),
        );
    }

    #[test]
    fn rpc_same_request_type() {
        let old = proto3(SERVICE);
        let new = old.replace("Get(GetRequest)", "Get(Other)");
        let rule = RPC_SAME_REQUEST_TYPE;
        breaks(WIRE, &old, &new, rule, "acme.Orders.Get", "a.proto:14:3");
        // Deleting an RPC is not a wire concern.
        let rpc = "  rpc Get(GetRequest) returns (GetResponse);\n";
        allows(WIRE, &old, &old.replace(rpc, ""));
    }

    #[test]
    fn rpc_same_response_type() {
        let old = proto3(SERVICE);
        let new = old.replace("returns (GetResponse)", "returns (Other)");
        let rule = RPC_SAME_RESPONSE_TYPE;
        breaks(WIRE, &old, &new, rule, "acme.Orders.Get", "a.proto:14:3");
        allows(
            WIRE,
            &old,
            &old.replace("(GetResponse);", "(GetResponse) {}"),
        );
    }

    #[test]
    fn rpc_same_client_streaming() {
        let old = proto3(SERVICE);
        let new = old.replace("Get(GetRequest)", "Get(stream GetRequest)");
        let rule = RPC_SAME_CLIENT_STREAMING;
        breaks(WIRE, &old, &new, rule, "acme.Orders.Get", "a.proto:14:3");
        allows(
            WIRE,
            &new,
            &new.replace("(GetResponse);", "(GetResponse) {}"),
        );
    }

    #[test]
    fn rpc_same_server_streaming() {
        let old = proto3(SERVICE).replace("returns (", "returns (stream ");
        let new = proto3(SERVICE);
        let rule = RPC_SAME_SERVER_STREAMING;
        breaks(WIRE, &old, &new, rule, "acme.Orders.Get", "a.proto:14:3");
        allows(WIRE, &old, &old.replace("GetResponse);", "GetResponse) {}"));
    }

    #[test]
    fn rpc_same_idempotency_level() {
        let old = proto3(SERVICE);
        let level = |level: &str| {
            let option = format!("{{\n    option idempotency_level = {level};\n  }}");
            old.replace("(GetResponse);", &format!("(GetResponse) {option}"))
        };
        let rule = RPC_SAME_IDEMPOTENCY_LEVEL;
        breaks(
            WIRE,
            &old,
            &level("NO_SIDE_EFFECTS"),
            rule,
            "acme.Orders.Get",
            "a.proto:14:3",
        );
        allows(WIRE, &old, &level("IDEMPOTENCY_UNKNOWN"));
    }
}

#[test]
fn schema_violations_name_their_schema_in_text_and_json() {
    let v = super::SchemaViolation {
        schema_id: "shop.orders".into(),
        against_version: Some(2),
        violation: Violation::new(FIELD_SAME_NAME, "acme.A.x", None, "renamed".into()),
    };
    assert_eq!(
        v.to_string(),
        "schema shop.orders (against version 2): FIELD_SAME_NAME: acme.A.x: renamed"
    );
    let json = serde_json::to_value(&v).unwrap();
    assert_eq!(json["schema_id"], "shop.orders");
    assert_eq!(json["rule"], "FIELD_SAME_NAME", "flattened: {json}");
    assert_eq!(json["against_version"], 2);
}
