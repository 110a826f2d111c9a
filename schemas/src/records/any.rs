//! [`AnyRecord`]: whichever record a log entry holds, as `parley replay` prints it.

use apache_avro::types::Value;
use serde::Serialize;

use super::*;
use crate::codec::{encode, Record};
use crate::error::{Error, Result};

/// Every record of the contract.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum AnyRecord {
    ConversationCreated(ConversationCreated),
    MembersAdded(MembersAdded),
    MemberRemoved(MemberRemoved),
    MessagePosted(MessagePosted),
    ReceiptRecorded(ReceiptRecorded),
    TypingChanged(TypingChanged),
    PresenceUpdated(PresenceUpdated),
    PresenceAcked(PresenceAcked),
    DeliveryBatch(DeliveryBatch),
    InboxEntry(InboxEntry),
    PushJob(PushJob),
    DeadLetter(DeadLetter),
    DeviceRegistered(DeviceRegistered),
    ConversationMuted(ConversationMuted),
    PushOptedIn(PushOptedIn),
    MemberRoleSet(MemberRoleSet),
    GroupSettingsChanged(GroupSettingsChanged),
    PresenceVisibility(PresenceVisibility),
    SlotLease(SlotLease),
    MessageEdited(MessageEdited),
    MessageDeleted(MessageDeleted),
    ReactionSet(ReactionSet),
}

macro_rules! each_record {
    ($m:ident) => {
        $m! {
            ConversationCreated,
            MembersAdded,
            MemberRemoved,
            MessagePosted,
            ReceiptRecorded,
            TypingChanged,
            PresenceUpdated,
            PresenceAcked,
            DeliveryBatch,
            InboxEntry,
            PushJob,
            DeadLetter,
            DeviceRegistered,
            ConversationMuted,
            PushOptedIn,
            MemberRoleSet,
            GroupSettingsChanged,
            PresenceVisibility,
            SlotLease,
            MessageEdited,
            MessageDeleted,
            ReactionSet
        }
    };
}

macro_rules! impl_any {
    ($($t:ident),*) => {
        impl AnyRecord {
            /// The schema's full name, e.g. `parley.MessagePosted`.
            pub fn schema_name(&self) -> &'static str {
                match self {
                    $(AnyRecord::$t(_) => $t::NAME,)*
                }
            }

            /// The record from a value of the schema named `name`.
            pub fn from_avro(name: &str, value: Value) -> Result<Self> {
                $(if name == $t::NAME {
                    return Ok(AnyRecord::$t($t::from_avro(value)?));
                })*
                Err(Error::UnknownSchema(name.to_string()))
            }

            pub fn encode(&self) -> Result<Vec<u8>> {
                match self {
                    $(AnyRecord::$t(r) => encode(r),)*
                }
            }

            /// The record's [`Meta`].
            pub fn meta(&self) -> &Meta {
                match self {
                    $(AnyRecord::$t(r) => &r.meta,)*
                }
            }
        }

        $(impl From<$t> for AnyRecord {
            fn from(r: $t) -> Self {
                AnyRecord::$t(r)
            }
        })*
    };
}

each_record!(impl_any);

impl AnyRecord {
    /// JSON for humans and analytics: a delivery batch shows its nested event decoded.
    pub fn to_json(&self) -> serde_json::Value {
        let mut json = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        if let (AnyRecord::DeliveryBatch(d), Some(obj)) = (self, json.as_object_mut()) {
            let nested = match crate::codec::decode_any(&d.event) {
                Ok(inner) => serde_json::json!({
                    "schema": inner.schema_name(),
                    "record": inner.to_json(),
                }),
                Err(e) => serde_json::json!({ "decode_error": e.to_string() }),
            };
            obj.insert("event".into(), nested);
        }
        json
    }
}

/// Serde helper: bytes as standard base64 in JSON.
pub(crate) mod base64_bytes {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(serde::de::Error::custom)
    }
}

pub(crate) mod opt_base64_bytes {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(b) => s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| {
                base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .map_err(serde::de::Error::custom)
            })
            .transpose()
    }
}
