//! Presence heartbeats (topic `presence`, compacted; key `user_id/slot`).

use apache_avro::types::Value;
use serde::{Deserialize, Serialize};

use super::{with_meta, Meta};
use crate::codec::Record;
use crate::error::Result;
use crate::value::Fields;

/// `user_id` has `sessions` open at gateway `gateway_slot` until `expires_at`, unless
/// a later heartbeat extends it. A tombstone (null value) ends it at once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceUpdated {
    #[serde(flatten)]
    pub meta: Meta,
    pub user_id: String,
    pub gateway_slot: i32,
    pub sessions: i32,
    pub expires_at: i64,
    /// Set when a session opened: fanout-workers answer with [`super::PresenceAcked`].
    pub ack: bool,
}

impl PresenceUpdated {
    /// The compaction key: one record per user per gateway slot.
    pub fn key(user_id: &str, gateway_slot: i32) -> String {
        format!("{user_id}/{gateway_slot}")
    }
}

impl Record for PresenceUpdated {
    const NAME: &'static str = "parley.PresenceUpdated";

    fn to_avro(&self) -> Value {
        with_meta(
            &self.meta,
            vec![
                ("user_id", Value::String(self.user_id.clone())),
                ("gateway_slot", Value::Int(self.gateway_slot)),
                ("sessions", Value::Int(self.sessions)),
                ("expires_at", Value::TimestampMillis(self.expires_at)),
                ("ack", Value::Boolean(self.ack)),
            ],
        )
    }

    fn from_avro(value: Value) -> Result<Self> {
        let mut f = Fields::new(value, Self::NAME)?;
        Ok(Self {
            meta: Meta::take(&mut f)?,
            user_id: f.string("user_id")?,
            gateway_slot: f.int("gateway_slot")?,
            sessions: f.int("sessions")?,
            expires_at: f.long("expires_at")?,
            ack: f.boolean("ack")?,
        })
    }
}
