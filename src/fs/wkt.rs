//! `.proto` sources of the Google well-known types, so `<ns>/current/` is a
//! self-sufficient include root. protox carries them only as compiled
//! descriptors, so the sources are printed back from those descriptors.
//! Options are the ones prost-types models (the long-standing ones every
//! protoc understands); comments are not kept.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::OnceLock;

use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{
    DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorProto,
};

/// Import path → source, for every well-known type protox resolves.
pub fn sources() -> &'static BTreeMap<String, String> {
    static SOURCES: OnceLock<BTreeMap<String, String>> = OnceLock::new();
    SOURCES.get_or_init(|| {
        prost_reflect::DescriptorPool::global()
            .files()
            .filter(|f| f.name().starts_with("google/protobuf/"))
            .map(|f| (f.name().to_string(), print_file(f.file_descriptor_proto())))
            .collect()
    })
}

fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for b in s.bytes() {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\{b:03o}");
            }
        }
    }
    out.push('"');
    out
}

/// Prints a file descriptor as `.proto` source (also the Confluent API's
/// text form of schemas it receives as descriptors).
pub fn print_file(f: &FileDescriptorProto) -> String {
    let mut out = String::new();
    let proto3 = f.syntax() == "proto3";
    let _ = writeln!(
        out,
        "syntax = \"{}\";\n",
        if proto3 { "proto3" } else { "proto2" }
    );
    if !f.package().is_empty() {
        let _ = writeln!(out, "package {};\n", f.package());
    }
    for d in &f.dependency {
        let _ = writeln!(out, "import {};", quote(d));
    }
    if !f.dependency.is_empty() {
        out.push('\n');
    }
    if let Some(o) = &f.options {
        let strings = [
            ("java_package", &o.java_package),
            ("java_outer_classname", &o.java_outer_classname),
            ("go_package", &o.go_package),
            ("objc_class_prefix", &o.objc_class_prefix),
            ("csharp_namespace", &o.csharp_namespace),
            ("swift_prefix", &o.swift_prefix),
            ("php_namespace", &o.php_namespace),
            ("ruby_package", &o.ruby_package),
        ];
        for (name, v) in strings {
            if let Some(v) = v {
                let _ = writeln!(out, "option {name} = {};", quote(v));
            }
        }
        let bools = [
            ("java_multiple_files", o.java_multiple_files),
            ("cc_enable_arenas", o.cc_enable_arenas),
            ("deprecated", o.deprecated),
        ];
        for (name, v) in bools {
            if let Some(v) = v {
                let _ = writeln!(out, "option {name} = {v};");
            }
        }
        if o.optimize_for.is_some() {
            let _ = writeln!(
                out,
                "option optimize_for = {};",
                o.optimize_for().as_str_name()
            );
        }
        out.push('\n');
    }
    for m in &f.message_type {
        print_message(&mut out, m, 0, proto3);
    }
    for e in &f.enum_type {
        print_enum(&mut out, e, 0);
    }
    for s in &f.service {
        let _ = writeln!(out, "service {} {{", s.name());
        for m in &s.method {
            let stream = |b: bool| if b { "stream " } else { "" };
            let _ = writeln!(
                out,
                "  rpc {}({}{}) returns ({}{});",
                m.name(),
                stream(m.client_streaming()),
                m.input_type(),
                stream(m.server_streaming()),
                m.output_type()
            );
        }
        out.push_str("}\n\n");
    }
    out.trim_end().to_string() + "\n"
}

fn scalar(t: Type) -> &'static str {
    match t {
        Type::Double => "double",
        Type::Float => "float",
        Type::Int64 => "int64",
        Type::Uint64 => "uint64",
        Type::Int32 => "int32",
        Type::Fixed64 => "fixed64",
        Type::Fixed32 => "fixed32",
        Type::Bool => "bool",
        Type::String => "string",
        Type::Bytes => "bytes",
        Type::Uint32 => "uint32",
        Type::Sfixed32 => "sfixed32",
        Type::Sfixed64 => "sfixed64",
        Type::Sint32 => "sint32",
        Type::Sint64 => "sint64",
        Type::Group | Type::Message | Type::Enum => "",
    }
}

fn field_type(f: &FieldDescriptorProto) -> String {
    match f.r#type() {
        Type::Message | Type::Enum | Type::Group => f.type_name().to_string(),
        t => scalar(t).to_string(),
    }
}

fn field_line(f: &FieldDescriptorProto, m: &DescriptorProto, proto3: bool) -> String {
    // Map fields: the generated entry message gives key and value types.
    if f.label() == Label::Repeated && f.r#type() == Type::Message {
        let entry = f.type_name().rsplit('.').next().unwrap_or_default();
        if let Some(e) = m
            .nested_type
            .iter()
            .find(|n| n.name() == entry && n.options.as_ref().is_some_and(|o| o.map_entry()))
        {
            let (k, v) = (&e.field[0], &e.field[1]);
            return format!(
                "map<{}, {}> {} = {};",
                field_type(k),
                field_type(v),
                f.name(),
                f.number()
            );
        }
    }
    let label = match f.label() {
        Label::Repeated => "repeated ",
        Label::Required => "required ",
        Label::Optional if !proto3 || f.proto3_optional() => "optional ",
        Label::Optional => "",
    };
    let mut opts = Vec::new();
    if f.default_value.is_some() {
        let v = match f.r#type() {
            Type::String | Type::Bytes => quote(f.default_value()),
            _ => f.default_value().to_string(),
        };
        opts.push(format!("default = {v}"));
    }
    if let Some(o) = &f.options {
        if let Some(p) = o.packed {
            opts.push(format!("packed = {p}"));
        }
        if let Some(d) = o.deprecated {
            opts.push(format!("deprecated = {d}"));
        }
        if let Some(l) = o.lazy {
            opts.push(format!("lazy = {l}"));
        }
    }
    let opts = if opts.is_empty() {
        String::new()
    } else {
        format!(" [{}]", opts.join(", "))
    };
    format!(
        "{label}{} {} = {}{opts};",
        field_type(f),
        f.name(),
        f.number()
    )
}

fn print_message(out: &mut String, m: &DescriptorProto, depth: usize, proto3: bool) {
    let pad = "  ".repeat(depth);
    let _ = writeln!(out, "{pad}message {} {{", m.name());
    for n in m
        .nested_type
        .iter()
        .filter(|n| !n.options.as_ref().is_some_and(|o| o.map_entry()))
    {
        print_message(out, n, depth + 1, proto3);
    }
    for e in &m.enum_type {
        print_enum(out, e, depth + 1);
    }
    // Fields in order; a real oneof's fields are printed in its block at
    // the place of its first field.
    let mut printed_oneofs = Vec::new();
    for f in &m.field {
        // An index naming no oneof (only in a damaged descriptor): a plain field.
        let oneof = f
            .oneof_index
            .filter(|_| !f.proto3_optional())
            .and_then(|i| Some((i, m.oneof_decl.get(usize::try_from(i).ok()?)?)));
        match oneof {
            Some((i, decl)) => {
                if printed_oneofs.contains(&i) {
                    continue;
                }
                printed_oneofs.push(i);
                let _ = writeln!(out, "{pad}  oneof {} {{", decl.name());
                for g in m.field.iter().filter(|g| g.oneof_index == Some(i)) {
                    let _ = writeln!(out, "{pad}    {}", field_line(g, m, proto3));
                }
                let _ = writeln!(out, "{pad}  }}");
            }
            None => {
                let _ = writeln!(out, "{pad}  {}", field_line(f, m, proto3));
            }
        }
    }
    for r in &m.extension_range {
        let end = if r.end() >= 536_870_912 {
            "max".to_string()
        } else {
            r.end().saturating_sub(1).to_string()
        };
        let _ = writeln!(out, "{pad}  extensions {} to {end};", r.start());
    }
    for r in &m.reserved_range {
        let end = r.end().saturating_sub(1);
        if end == r.start() {
            let _ = writeln!(out, "{pad}  reserved {};", r.start());
        } else {
            let _ = writeln!(out, "{pad}  reserved {} to {end};", r.start());
        }
    }
    if !m.reserved_name.is_empty() {
        let names: Vec<String> = m.reserved_name.iter().map(|n| quote(n)).collect();
        let _ = writeln!(out, "{pad}  reserved {};", names.join(", "));
    }
    let _ = writeln!(out, "{pad}}}\n");
}

fn print_enum(out: &mut String, e: &EnumDescriptorProto, depth: usize) {
    let pad = "  ".repeat(depth);
    let _ = writeln!(out, "{pad}enum {} {{", e.name());
    if e.options.as_ref().is_some_and(|o| o.allow_alias()) {
        let _ = writeln!(out, "{pad}  option allow_alias = true;");
    }
    for v in &e.value {
        let deprecated = v
            .options
            .as_ref()
            .and_then(|o| o.deprecated)
            .map(|d| format!(" [deprecated = {d}]"));
        let _ = writeln!(
            out,
            "{pad}  {} = {}{};",
            v.name(),
            v.number(),
            deprecated.unwrap_or_default()
        );
    }
    for r in &e.reserved_range {
        // Enum reserved ranges are inclusive.
        if r.end() == r.start() {
            let _ = writeln!(out, "{pad}  reserved {};", r.start());
        } else {
            let _ = writeln!(out, "{pad}  reserved {} to {};", r.start(), r.end());
        }
    }
    if !e.reserved_name.is_empty() {
        let names: Vec<String> = e.reserved_name.iter().map(|n| quote(n)).collect();
        let _ = writeln!(out, "{pad}  reserved {};", names.join(", "));
    }
    let _ = writeln!(out, "{pad}}}\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every generated source compiles (with protox here; tests/integration/mount.rs
    /// runs protoc on them through the mount) to the same structure.
    #[test]
    fn sources_compile_back_to_the_same_descriptors() {
        let all = sources();
        assert!(
            all.contains_key("google/protobuf/timestamp.proto")
                && all.contains_key("google/protobuf/descriptor.proto")
        );
        struct Map(&'static BTreeMap<String, String>);
        impl protox::file::FileResolver for Map {
            fn open_file(&self, name: &str) -> Result<protox::file::File, protox::Error> {
                match self.0.get(name) {
                    Some(src) => protox::file::File::from_source(name, src),
                    None => Err(protox::Error::file_not_found(name)),
                }
            }
        }
        let mut c = protox::Compiler::with_file_resolver(Map(all));
        c.open_files(all.keys()).unwrap_or_else(|e| panic!("{e}"));
        let pool = c.descriptor_pool();
        for (name, _) in all.iter() {
            let ours = pool.get_file_by_name(name).unwrap();
            let orig = prost_reflect::DescriptorPool::global()
                .get_file_by_name(name)
                .unwrap();
            let names = |f: &prost_reflect::FileDescriptor| {
                let mut out = Vec::new();
                for m in f.messages() {
                    for x in m.fields() {
                        let kind = format!("{:?}", x.kind());
                        out.push((
                            m.full_name().to_string(),
                            x.name().to_string(),
                            x.number(),
                            kind,
                            x.is_list(),
                            x.is_map(),
                        ));
                    }
                }
                out
            };
            assert_eq!(names(&ours), names(&orig), "{name}");
        }
    }
}
