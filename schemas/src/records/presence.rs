//! Presence (topic `presence`, compacted): a record per user per gateway slot (key
//! `user_id/slot`), and the slot's lease (key `*lease/slot`), which keeps its users'
//! records alive while the gateway runs.

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

/// Gateway slot `gateway_slot` is alive until `expires_at` (renewed every heartbeat).
/// A [`PresenceUpdated`] of that slot whose `occurred_at` is at or after `since` lives
/// while this lease does, whatever its own `expires_at`: so a gateway writes one record
/// per heartbeat, and a user's record only when their presence there begins or ends.
/// A record older than `since` (an earlier run of the slot's) is not kept alive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotLease {
    #[serde(flatten)]
    pub meta: Meta,
    pub gateway_slot: i32,
    pub since: i64,
    pub expires_at: i64,
}

impl SlotLease {
    /// The compaction key: one lease per slot. `*` is never in a user id, so no user's
    /// key is a lease's.
    pub fn key(gateway_slot: i32) -> String {
        format!("{LEASE_PREFIX}{gateway_slot}")
    }

    /// The slot of a lease's key, `None` for any other key.
    pub fn slot_of_key(key: &str) -> Option<i32> {
        key.strip_prefix(LEASE_PREFIX)?.parse().ok()
    }

    /// Whether this lease keeps `record` alive at `now_ms`.
    pub fn keeps(&self, record_slot: i32, record_occurred_at: i64, now_ms: i64) -> bool {
        self.gateway_slot == record_slot
            && record_occurred_at >= self.since
            && self.expires_at > now_ms
    }
}

const LEASE_PREFIX: &str = "*lease/";

impl Record for SlotLease {
    const NAME: &'static str = "parley.SlotLease";

    fn to_avro(&self) -> Value {
        with_meta(
            &self.meta,
            vec![
                ("gateway_slot", Value::Int(self.gateway_slot)),
                ("since", Value::TimestampMillis(self.since)),
                ("expires_at", Value::TimestampMillis(self.expires_at)),
            ],
        )
    }

    fn from_avro(value: Value) -> Result<Self> {
        let mut f = Fields::new(value, Self::NAME)?;
        Ok(Self {
            meta: Meta::take(&mut f)?,
            gateway_slot: f.int("gateway_slot")?,
            since: f.long("since")?,
            expires_at: f.long("expires_at")?,
        })
    }
}
