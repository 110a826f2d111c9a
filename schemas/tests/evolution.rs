//! Schema evolution: a reader whose schema gained an optional field reads old bytes.

use apache_avro::types::Value;
use apache_avro::Schema;
use parley_schemas::{codec, encode, registry, samples};

#[test]
fn a_reader_with_an_added_optional_field_reads_old_bytes() {
    let old = encode(&samples::message_posted()).unwrap();

    // The current MessagePosted schema plus a field a later version might add.
    let mut json: serde_json::Value =
        serde_json::from_str(registry::by_name("parley.MessagePosted").unwrap().json).unwrap();
    json["fields"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "name": "thread_root", "type": ["null", "string"], "default": null
        }));
    let newer = Schema::parse_str(&json.to_string()).unwrap();

    let value = codec::read_with_schema(&old, &newer).unwrap();
    let Value::Record(fields) = value else {
        panic!("not a record")
    };
    let get = |n: &str| fields.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    assert_eq!(
        get("body"),
        Some(Value::Union(
            0,
            Box::new(Value::String("héllo, wörld ✓".into()))
        ))
    );
    assert_eq!(
        get("thread_root"),
        Some(Value::Union(0, Box::new(Value::Null)))
    );
}

#[test]
fn a_reader_that_drops_a_field_skips_it() {
    let old = encode(&samples::message_posted()).unwrap();
    let mut json: serde_json::Value =
        serde_json::from_str(registry::by_name("parley.MessagePosted").unwrap().json).unwrap();
    json["fields"]
        .as_array_mut()
        .unwrap()
        .retain(|f| f["name"] != "client_msg_id");
    let narrower = Schema::parse_str(&json.to_string()).unwrap();
    let Value::Record(fields) = codec::read_with_schema(&old, &narrower).unwrap() else {
        panic!("not a record")
    };
    assert!(fields.iter().all(|(k, _)| k != "client_msg_id"));
    assert!(fields.iter().any(|(k, _)| k == "body"));
}

#[test]
fn a_reader_with_an_added_required_field_is_refused_clearly() {
    let old = encode(&samples::message_posted()).unwrap();
    let mut json: serde_json::Value =
        serde_json::from_str(registry::by_name("parley.MessagePosted").unwrap().json).unwrap();
    json["fields"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "required_new", "type": "string"}));
    let newer = Schema::parse_str(&json.to_string()).unwrap();
    assert!(codec::read_with_schema(&old, &newer).is_err());
}
