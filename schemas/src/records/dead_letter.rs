//! Records the log refused (topic `dead-letters`, key = the topic meant).

use apache_avro::types::Value;
use serde::{Deserialize, Serialize};

use super::{with_meta, Meta};
use crate::codec::Record;
use crate::error::Result;
use crate::value::{nullable, Fields};

/// The largest refused record kept whole in a dead letter, in bytes.
pub const DEAD_LETTER_VALUE_MAX: usize = 512 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    #[serde(flatten)]
    pub meta: Meta,
    /// The topic the refused record was meant for.
    pub topic: String,
    /// The partition it was meant for, when chosen.
    pub partition: Option<i32>,
    #[serde(with = "crate::records::any::base64_bytes")]
    pub key: Vec<u8>,
    /// The refused record, when it is at most [`DEAD_LETTER_VALUE_MAX`] bytes.
    #[serde(with = "crate::records::any::opt_base64_bytes")]
    pub value: Option<Vec<u8>>,
    pub value_size: i64,
    /// Why the log refused it.
    pub error: String,
    /// The record whose handling produced it.
    pub source_topic: String,
    pub source_partition: i32,
    pub source_offset: i64,
}

impl Record for DeadLetter {
    const NAME: &'static str = "parley.DeadLetter";

    fn to_avro(&self) -> Value {
        with_meta(
            &self.meta,
            vec![
                ("topic", Value::String(self.topic.clone())),
                ("partition", nullable(self.partition.map(Value::Int))),
                ("key", Value::Bytes(self.key.clone())),
                ("value", nullable(self.value.clone().map(Value::Bytes))),
                ("value_size", Value::Long(self.value_size)),
                ("error", Value::String(self.error.clone())),
                ("source_topic", Value::String(self.source_topic.clone())),
                ("source_partition", Value::Int(self.source_partition)),
                ("source_offset", Value::Long(self.source_offset)),
            ],
        )
    }

    fn from_avro(value: Value) -> Result<Self> {
        let mut f = Fields::new(value, Self::NAME)?;
        Ok(Self {
            meta: Meta::take(&mut f)?,
            topic: f.string("topic")?,
            partition: f.opt_int("partition")?,
            key: f.bytes("key")?,
            value: f.opt_bytes("value")?,
            value_size: f.long("value_size")?,
            error: f.string("error")?,
            source_topic: f.string("source_topic")?,
            source_partition: f.int("source_partition")?,
            source_offset: f.long("source_offset")?,
        })
    }
}
