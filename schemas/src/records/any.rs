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
    DataKey(DataKey),
    TransitKey(TransitKey),
    UserErased(UserErased),
    MessagesExpired(MessagesExpired),
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
            ReactionSet,
            DataKey,
            TransitKey,
            UserErased,
            MessagesExpired
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

            /// The record from a body of the current schema named `name`, read directly
            /// ([`crate::binary`]); `None` when that record has no direct reader.
            pub(crate) fn read_binary(name: &str, body: &[u8]) -> Option<Result<Self>> {
                $(if name == $t::NAME {
                    return crate::codec::read_binary::<$t>(body).map(|r| r.map(AnyRecord::$t));
                })*
                None
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
        match (self, json.as_object_mut()) {
            (AnyRecord::MessagePosted(m), Some(obj)) => {
                sealed_fields(m.sealed.as_ref(), obj);
                let mentions = m.sealed.as_ref().map_or(&[][..], |s| &s.mentions[..]);
                obj.insert("mentions".into(), serde_json::json!(mentions));
            }
            (AnyRecord::MessageEdited(e), Some(obj)) => sealed_fields(e.sealed.as_ref(), obj),
            _ => {}
        }
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

/// A message's (or an edit's) JSON names its schema's fields: a sealed body is its
/// ciphertext in base64, with `key_id`, `nonce` and the rest beside it (null when the
/// body is plain).
fn sealed_fields(s: Option<&Sealed>, obj: &mut serde_json::Map<String, serde_json::Value>) {
    use base64::Engine;
    use serde_json::{json, Value as J};
    let b64 = |b: &[u8]| J::String(base64::engine::general_purpose::STANDARD.encode(b));
    obj.remove("sealed");
    if let Some(s) = s {
        obj.insert("body".into(), b64(&s.ciphertext));
    }
    obj.insert("key_id".into(), json!(s.map(|s| &s.key_id)));
    obj.insert("nonce".into(), s.map_or(J::Null, |s| b64(&s.nonce)));
    obj.insert(
        "transit_key".into(),
        json!(s.and_then(|s| s.transit_key.as_ref())),
    );
    obj.insert(
        "transit_wrapped".into(),
        s.and_then(|s| s.transit_wrapped.as_deref())
            .map_or(J::Null, b64),
    );
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
