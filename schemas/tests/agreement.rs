//! Each Rust type and its `.avsc` agree: the same fields, in the same order, with values
//! the schema accepts, and a file in `schemas/avro/` for every registered schema.

use apache_avro::types::Value;
use apache_avro::Schema;
use parley_schemas::{registry, samples, AnyRecord};

fn avro_value(record: &AnyRecord) -> Value {
    use parley_schemas::Record;
    match record {
        AnyRecord::ConversationCreated(r) => r.to_avro(),
        AnyRecord::MembersAdded(r) => r.to_avro(),
        AnyRecord::MemberRemoved(r) => r.to_avro(),
        AnyRecord::MessagePosted(r) => r.to_avro(),
        AnyRecord::ReceiptRecorded(r) => r.to_avro(),
        AnyRecord::TypingChanged(r) => r.to_avro(),
        AnyRecord::PresenceUpdated(r) => r.to_avro(),
        AnyRecord::PresenceAcked(r) => r.to_avro(),
        AnyRecord::DeliveryBatch(r) => r.to_avro(),
        AnyRecord::InboxEntry(r) => r.to_avro(),
        AnyRecord::PushJob(r) => r.to_avro(),
        AnyRecord::DeadLetter(r) => r.to_avro(),
        AnyRecord::DeviceRegistered(r) => r.to_avro(),
        AnyRecord::ConversationMuted(r) => r.to_avro(),
        AnyRecord::PushOptedIn(r) => r.to_avro(),
        AnyRecord::MemberRoleSet(r) => r.to_avro(),
        AnyRecord::GroupSettingsChanged(r) => r.to_avro(),
        AnyRecord::PresenceVisibility(r) => r.to_avro(),
        AnyRecord::SlotLease(r) => r.to_avro(),
        AnyRecord::MessageEdited(r) => r.to_avro(),
        AnyRecord::MessageDeleted(r) => r.to_avro(),
        AnyRecord::ReactionSet(r) => r.to_avro(),
        AnyRecord::DataKey(r) => r.to_avro(),
        AnyRecord::TransitKey(r) => r.to_avro(),
        AnyRecord::UserErased(r) => r.to_avro(),
        AnyRecord::MessagesExpired(r) => r.to_avro(),
    }
}

#[test]
fn every_rust_type_matches_its_schema() {
    for record in samples::one_of_each() {
        let info = registry::by_name(record.schema_name()).unwrap();
        let value = avro_value(&record);
        assert!(
            value.validate(&info.schema),
            "{} does not validate",
            info.name
        );

        let Value::Record(fields) = &value else {
            panic!("{} is not a record value", info.name)
        };
        let rust_fields: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
        let Schema::Record(rs) = &info.schema else {
            panic!("{} is not a record schema", info.name)
        };
        let schema_fields: Vec<&str> = rs.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(rust_fields, schema_fields, "field order of {}", info.name);

        // And the JSON form (what replay prints) names the same fields.
        let json = record.to_json();
        let mut json_fields: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        let mut sorted_schema = schema_fields.clone();
        json_fields.sort();
        sorted_schema.sort();
        assert_eq!(json_fields, sorted_schema, "JSON fields of {}", info.name);
    }
}

#[test]
fn every_schema_file_is_registered_and_every_record_carries_meta() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("avro");
    let files = std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            let path = e.as_ref().unwrap().path();
            path.is_file() && path.extension().is_some_and(|x| x == "avsc")
        })
        .count();
    assert_eq!(files, registry::all().len());
    let older = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("avro/older");
    assert_eq!(
        std::fs::read_dir(older).unwrap().count(),
        registry::older().len(),
        "every file of avro/older is listed in registry::OLDER"
    );
    for old in registry::older() {
        let current = registry::by_name(old.name).expect("an older version of a current schema");
        assert_ne!(old.fingerprint, current.fingerprint, "{}", old.name);
    }
    for info in registry::all() {
        let Schema::Record(rs) = &info.schema else {
            panic!("{} is not a record", info.name)
        };
        let first: Vec<&str> = rs.fields.iter().take(3).map(|f| f.name.as_str()).collect();
        assert_eq!(first, ["event_id", "occurred_at", "actor"], "{}", info.name);
        assert_eq!(rs.name.fullname(None), info.name);
    }
}
