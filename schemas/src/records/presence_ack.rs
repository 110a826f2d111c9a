//! A fanout-worker's acknowledgement of a user's presence at a gateway (topic
//! `deliveries`, partition = gateway slot). The gateway waits for these before it takes
//! the read-your-log barrier of a sync, so no message falls between sync and live.

use apache_avro::types::Value;
use serde::{Deserialize, Serialize};

use super::{with_meta, Meta};
use crate::codec::Record;
use crate::error::Result;
use crate::value::Fields;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceAcked {
    #[serde(flatten)]
    pub meta: Meta,
    pub gateway_slot: i32,
    pub user_id: String,
    /// Where the acknowledged presence record is in the `presence` topic.
    pub presence_partition: i32,
    pub presence_offset: i64,
    /// Partitions of `events` the worker owns, and for each the first offset it routes
    /// with the user online.
    pub partitions: Vec<i32>,
    pub next_offsets: Vec<i64>,
}

impl Record for PresenceAcked {
    const NAME: &'static str = "parley.PresenceAcked";

    fn to_avro(&self) -> Value {
        with_meta(
            &self.meta,
            vec![
                ("gateway_slot", Value::Int(self.gateway_slot)),
                ("user_id", Value::String(self.user_id.clone())),
                ("presence_partition", Value::Int(self.presence_partition)),
                ("presence_offset", Value::Long(self.presence_offset)),
                (
                    "partitions",
                    Value::Array(self.partitions.iter().map(|&p| Value::Int(p)).collect()),
                ),
                (
                    "next_offsets",
                    Value::Array(self.next_offsets.iter().map(|&o| Value::Long(o)).collect()),
                ),
            ],
        )
    }

    fn from_avro(value: Value) -> Result<Self> {
        let mut f = Fields::new(value, Self::NAME)?;
        Ok(Self {
            meta: Meta::take(&mut f)?,
            gateway_slot: f.int("gateway_slot")?,
            user_id: f.string("user_id")?,
            presence_partition: f.int("presence_partition")?,
            presence_offset: f.long("presence_offset")?,
            partitions: f.ints("partitions")?,
            next_offsets: f.longs("next_offsets")?,
        })
    }
}
