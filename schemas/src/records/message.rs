//! A posted message: the record whose offset in `events` is its seq_no.

use apache_avro::types::Value;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{with_meta, Meta};
use crate::codec::Record;
use crate::error::Result;
use crate::value::Fields;

/// `meta.actor` is the sender.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessagePosted {
    #[serde(flatten)]
    pub meta: Meta,
    pub conversation_id: String,
    /// `UUIDv5(sender, client_msg_id)`: see [`crate::ids::message_id`].
    pub message_id: Uuid,
    pub client_msg_id: String,
    pub body: String,
}

impl MessagePosted {
    pub fn sender(&self) -> &str {
        &self.meta.actor
    }
}

impl Record for MessagePosted {
    const NAME: &'static str = "parley.MessagePosted";

    fn to_avro(&self) -> Value {
        with_meta(
            &self.meta,
            vec![
                (
                    "conversation_id",
                    Value::String(self.conversation_id.clone()),
                ),
                ("message_id", Value::Uuid(self.message_id)),
                ("client_msg_id", Value::String(self.client_msg_id.clone())),
                ("body", Value::String(self.body.clone())),
            ],
        )
    }

    fn from_avro(value: Value) -> Result<Self> {
        let mut f = Fields::new(value, Self::NAME)?;
        Ok(Self {
            meta: Meta::take(&mut f)?,
            conversation_id: f.string("conversation_id")?,
            message_id: f.uuid("message_id")?,
            client_msg_id: f.string("client_msg_id")?,
            body: f.string("body")?,
        })
    }
}
