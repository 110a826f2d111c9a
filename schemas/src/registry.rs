//! The schemas this build knows: each `schemas/avro/*.avsc`, parsed once, with its
//! Parsing Canonical Form and fingerprint.
//!
//! A decoder finds the writer's schema by the fingerprint in the record's header and
//! resolves it to the current schema of the same name, so records written with an older
//! version of a schema stay readable once that version is listed here too.

use std::sync::LazyLock;

use apache_avro::Schema;

use crate::canonical::canonical_form;
use crate::fingerprint::{fingerprint_bytes, to_hex};

/// One schema of the contract.
pub struct SchemaInfo {
    /// Full name, e.g. `parley.MessagePosted`.
    pub name: &'static str,
    /// The `.avsc` text as shipped in `schemas/avro/`.
    pub json: &'static str,
    pub schema: Schema,
    pub canonical_form: String,
    /// CRC-64-AVRO of the canonical form, little-endian (as single-object encoding writes it).
    pub fingerprint: [u8; 8],
    /// No named type in it is referred to by name (`Schema::Ref`), so it encodes and
    /// decodes with an empty name table, without resolving the schema on every call.
    pub self_contained: bool,
}

impl SchemaInfo {
    pub fn fingerprint_hex(&self) -> String {
        to_hex(&self.fingerprint)
    }
}

/// `(full name, file text)` of every schema of the contract.
pub const SOURCES: &[(&str, &str)] = &[
    (
        "parley.ConversationCreated",
        include_str!("../avro/ConversationCreated.avsc"),
    ),
    (
        "parley.MembersAdded",
        include_str!("../avro/MembersAdded.avsc"),
    ),
    (
        "parley.MemberRemoved",
        include_str!("../avro/MemberRemoved.avsc"),
    ),
    (
        "parley.MessagePosted",
        include_str!("../avro/MessagePosted.avsc"),
    ),
    (
        "parley.ReceiptRecorded",
        include_str!("../avro/ReceiptRecorded.avsc"),
    ),
    (
        "parley.TypingChanged",
        include_str!("../avro/TypingChanged.avsc"),
    ),
    (
        "parley.PresenceUpdated",
        include_str!("../avro/PresenceUpdated.avsc"),
    ),
    (
        "parley.PresenceAcked",
        include_str!("../avro/PresenceAcked.avsc"),
    ),
    (
        "parley.DeliveryBatch",
        include_str!("../avro/DeliveryBatch.avsc"),
    ),
    ("parley.InboxEntry", include_str!("../avro/InboxEntry.avsc")),
    ("parley.PushJob", include_str!("../avro/PushJob.avsc")),
    ("parley.DeadLetter", include_str!("../avro/DeadLetter.avsc")),
    (
        "parley.DeviceRegistered",
        include_str!("../avro/DeviceRegistered.avsc"),
    ),
    (
        "parley.ConversationMuted",
        include_str!("../avro/ConversationMuted.avsc"),
    ),
    (
        "parley.PushOptedIn",
        include_str!("../avro/PushOptedIn.avsc"),
    ),
    (
        "parley.MemberRoleSet",
        include_str!("../avro/MemberRoleSet.avsc"),
    ),
    (
        "parley.GroupSettingsChanged",
        include_str!("../avro/GroupSettingsChanged.avsc"),
    ),
    (
        "parley.PresenceVisibility",
        include_str!("../avro/PresenceVisibility.avsc"),
    ),
    ("parley.SlotLease", include_str!("../avro/SlotLease.avsc")),
    (
        "parley.MessageEdited",
        include_str!("../avro/MessageEdited.avsc"),
    ),
    (
        "parley.MessageDeleted",
        include_str!("../avro/MessageDeleted.avsc"),
    ),
    (
        "parley.ReactionSet",
        include_str!("../avro/ReactionSet.avsc"),
    ),
    ("parley.DataKey", include_str!("../avro/DataKey.avsc")),
    ("parley.TransitKey", include_str!("../avro/TransitKey.avsc")),
    ("parley.UserErased", include_str!("../avro/UserErased.avsc")),
    (
        "parley.MessagesExpired",
        include_str!("../avro/MessagesExpired.avsc"),
    ),
];

/// `(full name, file text)` of the earlier versions of schemas still in the log
/// (`schemas/avro/older/<Name>.<version>.avsc`). A record written with one of them is
/// read resolved to the current version of its name (a field added since takes its
/// default); nothing is written with them.
pub const OLDER: &[(&str, &str)] = &[
    (
        "parley.MessagePosted",
        include_str!("../avro/older/MessagePosted.1.avsc"),
    ),
    (
        "parley.MessagePosted",
        include_str!("../avro/older/MessagePosted.2.avsc"),
    ),
    (
        "parley.MessagePosted",
        include_str!("../avro/older/MessagePosted.3.avsc"),
    ),
    (
        "parley.PushJob",
        include_str!("../avro/older/PushJob.1.avsc"),
    ),
    (
        "parley.MessageEdited",
        include_str!("../avro/older/MessageEdited.1.avsc"),
    ),
    (
        "parley.DeliveryBatch",
        include_str!("../avro/older/DeliveryBatch.1.avsc"),
    ),
    (
        "parley.GroupSettingsChanged",
        include_str!("../avro/older/GroupSettingsChanged.1.avsc"),
    ),
];

static ALL: LazyLock<Vec<SchemaInfo>> = LazyLock::new(|| parse(SOURCES));
static ALL_OLDER: LazyLock<Vec<SchemaInfo>> = LazyLock::new(|| parse(OLDER));

fn parse(sources: &'static [(&'static str, &'static str)]) -> Vec<SchemaInfo> {
    sources
        .iter()
        .map(|(name, json)| {
            // These files are compiled in and checked by the tests; failing here is a build defect.
            let schema = Schema::parse_str(json)
                .unwrap_or_else(|e| panic!("schemas/avro: {name} does not parse: {e}"));
            let canonical_form = canonical_form(json)
                .unwrap_or_else(|e| panic!("schemas/avro: {name} has no canonical form: {e}"));
            let fingerprint = fingerprint_bytes(&canonical_form);
            let self_contained = !refers_by_name(&schema);
            SchemaInfo {
                name,
                json,
                schema,
                canonical_form,
                fingerprint,
                self_contained,
            }
        })
        .collect()
}

/// Every schema of the contract.
pub fn all() -> &'static [SchemaInfo] {
    &ALL
}

pub fn by_name(name: &str) -> Option<&'static SchemaInfo> {
    ALL.iter().find(|s| s.name == name)
}

/// The earlier versions of schemas that records in the log may still carry ([`OLDER`]).
pub fn older() -> &'static [SchemaInfo] {
    &ALL_OLDER
}

/// The schema, current or earlier, whose fingerprint is `fp`.
pub fn by_fingerprint(fp: &[u8; 8]) -> Option<&'static SchemaInfo> {
    ALL.iter()
        .chain(ALL_OLDER.iter())
        .find(|s| &s.fingerprint == fp)
}

/// Whether `schema` refers to a named type by its name anywhere inside.
fn refers_by_name(schema: &Schema) -> bool {
    match schema {
        Schema::Ref { .. } => true,
        Schema::Record(r) => r.fields.iter().any(|f| refers_by_name(&f.schema)),
        Schema::Array(a) => refers_by_name(&a.items),
        Schema::Map(m) => refers_by_name(&m.types),
        Schema::Union(u) => u.variants().iter().any(refers_by_name),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_type_used_twice_is_a_reference() {
        let schema = Schema::parse_str(
            r#"{"type": "record", "name": "T", "fields": [
                {"name": "a", "type": {"type": "fixed", "name": "F", "size": 2}},
                {"name": "b", "type": "F"}]}"#,
        )
        .unwrap();
        assert!(refers_by_name(&schema));
        let inline = Schema::parse_str(
            r#"{"type": "record", "name": "T", "fields": [
                {"name": "a", "type": {"type": "array", "items": "string"}},
                {"name": "b", "type": ["null", {"type": "map", "values": "long"}]}]}"#,
        )
        .unwrap();
        assert!(!refers_by_name(&inline));
    }

    #[test]
    fn every_schema_of_the_contract_takes_the_fast_path() {
        for info in all() {
            assert!(
                info.self_contained,
                "{} refers to a type by name",
                info.name
            );
        }
    }
}
