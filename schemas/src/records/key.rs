//! The keys that sealed content is sealed under ([`crate::sealed`]): a message's data key
//! (topic `keys`), and a gateway's transit key of the hour (topic `transit-keys`). Both
//! topics are compacted; a tombstone (null value) for a key's id erases it.

use apache_avro::types::Value;
use serde::{Deserialize, Serialize};

use super::{with_meta, Meta};
use crate::codec::Record;
use crate::error::Result;
use crate::value::Fields;

/// A message's data key, wrapped by the key-encryption key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataKey {
    #[serde(flatten)]
    pub meta: Meta,
    /// `<conversation_id>/<event id of the sealed record>` ([`DataKey::id_of`]).
    pub key_id: String,
    /// The user whose content it seals.
    pub owner: String,
    pub conversation_id: String,
    pub kek_version: i32,
    #[serde(with = "crate::records::any::base64_bytes")]
    pub wrapped: Vec<u8>,
}

impl DataKey {
    /// The id of the data key of the record `event_id` of `conversation`.
    pub fn id_of(conversation: &str, event_id: &uuid::Uuid) -> String {
        format!("{conversation}/{event_id}")
    }

    /// The conversation a data key's id names (its partition of `keys` is that
    /// conversation's partition of `events`).
    pub fn conversation_of(key_id: &str) -> Option<&str> {
        key_id.rsplit_once('/').map(|(c, _)| c)
    }
}

impl Record for DataKey {
    const NAME: &'static str = "parley.DataKey";

    fn to_avro(&self) -> Value {
        with_meta(
            &self.meta,
            vec![
                ("key_id", Value::String(self.key_id.clone())),
                ("owner", Value::String(self.owner.clone())),
                (
                    "conversation_id",
                    Value::String(self.conversation_id.clone()),
                ),
                ("kek_version", Value::Int(self.kek_version)),
                ("wrapped", Value::Bytes(self.wrapped.clone())),
            ],
        )
    }

    fn from_avro(value: Value) -> Result<Self> {
        let mut f = Fields::new(value, Self::NAME)?;
        Ok(Self {
            meta: Meta::take(&mut f)?,
            key_id: f.string("key_id")?,
            owner: f.string("owner")?,
            conversation_id: f.string("conversation_id")?,
            kek_version: f.int("kek_version")?,
            wrapped: f.bytes("wrapped")?,
        })
    }
}

/// A gateway's transit key for one hour, wrapped by the key-encryption key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransitKey {
    #[serde(flatten)]
    pub meta: Meta,
    /// `t/<gateway slot>/<hour>/<instance>` ([`TransitKey::id_of`]).
    pub key_id: String,
    /// When it is erased (ms since the epoch).
    pub expires_at: i64,
    pub kek_version: i32,
    #[serde(with = "crate::records::any::base64_bytes")]
    pub wrapped: Vec<u8>,
}

impl TransitKey {
    /// The id of the transit key for hour `hour` (hours since the epoch) of the gateway
    /// process `instance` in slot `slot`. The instance is part of it because a restarted
    /// gateway makes keys of its own: one with its predecessor's id would replace that
    /// key in the compacted topic, and what the predecessor sealed could no longer be
    /// opened in transit.
    pub fn id_of(slot: i32, hour: i64, instance: &uuid::Uuid) -> String {
        format!("t/{slot}/{hour}/{}", instance.simple())
    }
}

impl Record for TransitKey {
    const NAME: &'static str = "parley.TransitKey";

    fn to_avro(&self) -> Value {
        with_meta(
            &self.meta,
            vec![
                ("key_id", Value::String(self.key_id.clone())),
                ("expires_at", Value::TimestampMillis(self.expires_at)),
                ("kek_version", Value::Int(self.kek_version)),
                ("wrapped", Value::Bytes(self.wrapped.clone())),
            ],
        )
    }

    fn from_avro(value: Value) -> Result<Self> {
        let mut f = Fields::new(value, Self::NAME)?;
        Ok(Self {
            meta: Meta::take(&mut f)?,
            key_id: f.string("key_id")?,
            expires_at: f.long("expires_at")?,
            kek_version: f.int("kek_version")?,
            wrapped: f.bytes("wrapped")?,
        })
    }
}

/// A user's content is erased (one record in every partition of `events`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserErased {
    #[serde(flatten)]
    pub meta: Meta,
    pub user_id: String,
}

impl Record for UserErased {
    const NAME: &'static str = "parley.UserErased";

    fn to_avro(&self) -> Value {
        with_meta(
            &self.meta,
            vec![("user_id", Value::String(self.user_id.clone()))],
        )
    }

    fn from_avro(value: Value) -> Result<Self> {
        let mut f = Fields::new(value, Self::NAME)?;
        Ok(Self {
            meta: Meta::take(&mut f)?,
            user_id: f.string("user_id")?,
        })
    }
}
