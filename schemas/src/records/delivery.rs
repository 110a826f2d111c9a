//! A routed event for one gateway (topic `deliveries`, partition = gateway slot).

use apache_avro::types::Value;
use serde::{Deserialize, Serialize};

use super::{with_meta, Meta};
use crate::binary::{Reader, Writer};
use crate::codec::Record;
use crate::error::Result;
use crate::value::{nullable, strings, Fields};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryBatch {
    #[serde(flatten)]
    pub meta: Meta,
    pub gateway_slot: i32,
    pub conversation_id: String,
    /// Users whose sessions at this gateway get the event (ignored when `broadcast`).
    pub recipients: Vec<String>,
    /// Large groups: every session of the gateway that follows the conversation.
    pub broadcast: bool,
    pub source_topic: String,
    pub source_partition: i32,
    /// The event's offset in its topic; for `events` this is the seq_no.
    pub source_offset: i64,
    /// seq of the conversation's previous message; -1 when the event is the
    /// conversation's first message; `None` when the router does not know it.
    pub prev_seq: Option<i64>,
    /// The routed record, single-object encoded.
    #[serde(with = "crate::records::any::base64_bytes")]
    pub event: Vec<u8>,
    /// seq of the conversation's latest change to a message routed before the event;
    /// -1 when there has been none; `None` when the router does not know it (and in
    /// version 1 records, which did not have it).
    #[serde(default)]
    pub prev_change: Option<i64>,
}

impl Record for DeliveryBatch {
    const NAME: &'static str = "parley.DeliveryBatch";

    fn to_avro(&self) -> Value {
        with_meta(
            &self.meta,
            vec![
                ("gateway_slot", Value::Int(self.gateway_slot)),
                (
                    "conversation_id",
                    Value::String(self.conversation_id.clone()),
                ),
                ("recipients", strings(&self.recipients)),
                ("broadcast", Value::Boolean(self.broadcast)),
                ("source_topic", Value::String(self.source_topic.clone())),
                ("source_partition", Value::Int(self.source_partition)),
                ("source_offset", Value::Long(self.source_offset)),
                ("prev_seq", nullable(self.prev_seq.map(Value::Long))),
                ("event", Value::Bytes(self.event.clone())),
                ("prev_change", nullable(self.prev_change.map(Value::Long))),
            ],
        )
    }

    fn from_avro(value: Value) -> Result<Self> {
        let mut f = Fields::new(value, Self::NAME)?;
        Ok(Self {
            meta: Meta::take(&mut f)?,
            gateway_slot: f.int("gateway_slot")?,
            conversation_id: f.string("conversation_id")?,
            recipients: f.strings("recipients")?,
            broadcast: f.boolean("broadcast")?,
            source_topic: f.string("source_topic")?,
            source_partition: f.int("source_partition")?,
            source_offset: f.long("source_offset")?,
            prev_seq: f.opt_long("prev_seq")?,
            event: f.bytes("event")?,
            prev_change: f.opt_long("prev_change")?,
        })
    }

    fn write_binary(&self, w: &mut Writer) -> bool {
        self.meta.write_binary(w);
        w.int(self.gateway_slot);
        w.string(&self.conversation_id);
        w.array(&self.recipients, |w, r| w.string(r));
        w.boolean(self.broadcast);
        w.string(&self.source_topic);
        w.int(self.source_partition);
        w.long(self.source_offset);
        w.nullable(self.prev_seq, |w, v| w.long(v));
        w.bytes(&self.event);
        w.nullable(self.prev_change, |w, v| w.long(v));
        true
    }

    fn read_binary(r: &mut Reader) -> Option<Result<Self>> {
        let mut read = || -> Result<Self> {
            Ok(Self {
                meta: Meta::read_binary(r)?,
                gateway_slot: r.int()?,
                conversation_id: r.string()?,
                recipients: r.array(|r| r.string())?,
                broadcast: r.boolean()?,
                source_topic: r.string()?,
                source_partition: r.int()?,
                source_offset: r.long()?,
                prev_seq: r.nullable(|r| r.long())?,
                event: r.bytes()?,
                prev_change: r.nullable(|r| r.long())?,
            })
        };
        Some(read())
    }
}
