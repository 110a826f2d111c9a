//! Parsing Canonical Form (PCF) of an Avro schema, per the Avro specification.
//!
//! The transformations, in the spec's words: PRIMITIVES (`{"type":"int"}` becomes `"int"`),
//! FULLNAMES, STRIP (keep only `type`, `name`, `fields`, `symbols`, `items`, `values`,
//! `size`), ORDER (those attributes in that order), STRINGS, INTEGERS, WHITESPACE.
//!
//! STRIP comes before PRIMITIVES: `{"type":"string","logicalType":"uuid"}` is `"string"`.
//! `apache-avro` 0.20 keeps `{"type":"string"}` there, so its fingerprints of schemas with
//! logical types differ from Java's and fastavro's (AVRO-4004); this module is the one
//! Parley uses.

use serde_json::Value as Json;

use crate::error::{Error, Result};

const PRIMITIVES: [&str; 8] = [
    "null", "boolean", "int", "long", "float", "double", "bytes", "string",
];

/// The Parsing Canonical Form of the schema in `json`.
pub fn canonical_form(json: &str) -> Result<String> {
    let schema: Json = serde_json::from_str(json).map_err(|e| Error::Schema {
        name: "<input>".into(),
        problem: e.to_string(),
    })?;
    let mut out = String::new();
    let mut defined = Vec::new();
    write_schema(&schema, None, &mut defined, &mut out)?;
    Ok(out)
}

fn write_schema(
    schema: &Json,
    namespace: Option<&str>,
    defined: &mut Vec<String>,
    out: &mut String,
) -> Result<()> {
    match schema {
        Json::String(name) => {
            if PRIMITIVES.contains(&name.as_str()) {
                write_str(name, out);
            } else {
                write_str(&fullname(name, None, namespace), out);
            }
            Ok(())
        }
        Json::Array(branches) => {
            out.push('[');
            for (i, b) in branches.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_schema(b, namespace, defined, out)?;
            }
            out.push(']');
            Ok(())
        }
        Json::Object(obj) => {
            let ty = obj
                .get("type")
                .ok_or_else(|| invalid("a schema object has no \"type\""))?;
            let ty_name = match ty {
                Json::String(s) => s.as_str(),
                // {"type": {...}} or {"type": [...]}: the attributes around it are dropped.
                other => return write_schema(other, namespace, defined, out),
            };
            match ty_name {
                "record" | "error" | "enum" | "fixed" => {
                    write_named(obj, ty_name, namespace, defined, out)
                }
                "array" => {
                    out.push_str("{\"type\":\"array\",\"items\":");
                    let items = obj
                        .get("items")
                        .ok_or_else(|| invalid("array without items"))?;
                    write_schema(items, namespace, defined, out)?;
                    out.push('}');
                    Ok(())
                }
                "map" => {
                    out.push_str("{\"type\":\"map\",\"values\":");
                    let values = obj
                        .get("values")
                        .ok_or_else(|| invalid("map without values"))?;
                    write_schema(values, namespace, defined, out)?;
                    out.push('}');
                    Ok(())
                }
                // A primitive (logical types and other attributes stripped) or a reference.
                other => write_schema(&Json::String(other.to_string()), namespace, defined, out),
            }
        }
        _ => Err(invalid("a schema is a string, an array or an object")),
    }
}

fn write_named(
    obj: &serde_json::Map<String, Json>,
    ty: &str,
    namespace: Option<&str>,
    defined: &mut Vec<String>,
    out: &mut String,
) -> Result<()> {
    let name = obj
        .get("name")
        .and_then(Json::as_str)
        .ok_or_else(|| invalid("a named type has no name"))?;
    let own_ns = obj.get("namespace").and_then(Json::as_str);
    let full = fullname(name, own_ns, namespace);
    if defined.contains(&full) {
        write_str(&full, out);
        return Ok(());
    }
    defined.push(full.clone());
    // Names nested inside take this type's namespace.
    let inner_ns = full.rsplit_once('.').map(|(ns, _)| ns.to_string());

    out.push_str("{\"name\":");
    write_str(&full, out);
    out.push_str(",\"type\":");
    write_str(if ty == "error" { "record" } else { ty }, out);
    match ty {
        "record" | "error" => {
            out.push_str(",\"fields\":[");
            let fields = obj
                .get("fields")
                .and_then(Json::as_array)
                .ok_or_else(|| invalid("record without fields"))?;
            for (i, f) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let fname = f
                    .get("name")
                    .and_then(Json::as_str)
                    .ok_or_else(|| invalid("field without name"))?;
                let ftype = f.get("type").ok_or_else(|| invalid("field without type"))?;
                out.push_str("{\"name\":");
                write_str(fname, out);
                out.push_str(",\"type\":");
                write_schema(ftype, inner_ns.as_deref(), defined, out)?;
                out.push('}');
            }
            out.push(']');
        }
        "enum" => {
            out.push_str(",\"symbols\":[");
            let symbols = obj
                .get("symbols")
                .and_then(Json::as_array)
                .ok_or_else(|| invalid("enum without symbols"))?;
            for (i, s) in symbols.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_str(s.as_str().ok_or_else(|| invalid("enum symbol"))?, out);
            }
            out.push(']');
        }
        "fixed" => {
            let size = obj
                .get("size")
                .and_then(Json::as_u64)
                .ok_or_else(|| invalid("fixed without size"))?;
            out.push_str(",\"size\":");
            out.push_str(&size.to_string());
        }
        _ => {}
    }
    out.push('}');
    Ok(())
}

fn fullname(name: &str, own_ns: Option<&str>, enclosing: Option<&str>) -> String {
    if name.contains('.') {
        return name.to_string();
    }
    match own_ns.or(enclosing) {
        Some(ns) if !ns.is_empty() => format!("{ns}.{name}"),
        _ => name.to_string(),
    }
}

/// A JSON string literal with no escapes beyond those JSON requires (STRINGS).
fn write_str(s: &str, out: &mut String) {
    out.push_str(&Json::String(s.to_string()).to_string());
}

fn invalid(problem: &str) -> Error {
    Error::Schema {
        name: "<input>".into(),
        problem: problem.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::crc64_avro;

    #[test]
    fn primitives_in_object_form_collapse() {
        assert_eq!(canonical_form(r#"{"type":"int"}"#).unwrap(), r#""int""#);
    }

    #[test]
    fn logical_types_are_stripped_before_primitives_collapse() {
        let s = r#"{"type":"record","name":"r","namespace":"a.b","doc":"x","fields":[
            {"name":"id","type":{"type":"string","logicalType":"uuid"},"doc":"d"},
            {"name":"at","type":{"type":"long","logicalType":"timestamp-millis"}},
            {"name":"o","type":["null","string"],"default":null}]}"#;
        assert_eq!(
            canonical_form(s).unwrap(),
            r#"{"name":"a.b.r","type":"record","fields":[{"name":"id","type":"string"},{"name":"at","type":"long"},{"name":"o","type":["null","string"]}]}"#
        );
    }

    #[test]
    fn nested_names_take_the_enclosing_namespace_and_repeat_by_name() {
        let s = r#"{"type":"record","name":"r","namespace":"p","fields":[
            {"name":"k","type":{"type":"enum","name":"K","symbols":["A","B"]}},
            {"name":"k2","type":"K"}]}"#;
        assert_eq!(
            canonical_form(s).unwrap(),
            r#"{"name":"p.r","type":"record","fields":[{"name":"k","type":{"name":"p.K","type":"enum","symbols":["A","B"]}},{"name":"k2","type":"p.K"}]}"#
        );
    }

    #[test]
    fn specification_record_vector() {
        let s = r#"{"type":"record","name":"foo","fields":[{"name":"f1","type":"boolean"}]}"#;
        let pcf = canonical_form(s).unwrap();
        assert_eq!(
            pcf,
            r#"{"name":"foo","type":"record","fields":[{"name":"f1","type":"boolean"}]}"#
        );
        assert_eq!(crc64_avro(pcf.as_bytes()) as i64, 7843277075252814651);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(canonical_form("{").is_err());
        assert!(canonical_form("42").is_err());
        assert!(canonical_form(r#"{"type":"record","name":"x"}"#).is_err());
    }
}
