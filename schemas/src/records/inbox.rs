//! Offline inbox entries (topic `inbox`, key `user_id`).

use apache_avro::types::Value;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{with_meta, Meta};
use crate::codec::Record;
use crate::error::Result;
use crate::value::Fields;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxEntry {
    #[serde(flatten)]
    pub meta: Meta,
    pub user_id: String,
    pub conversation_id: String,
    pub seq: i64,
    pub message_id: Uuid,
    pub sender_id: String,
}

impl InboxEntry {
    /// The entry of message `m` (at `seq`) for offline `user`, written by `actor`.
    pub fn for_message(actor: &str, user: &str, seq: i64, m: &super::MessagePosted) -> Self {
        InboxEntry {
            meta: Meta::new(actor),
            user_id: user.to_string(),
            conversation_id: m.conversation_id.clone(),
            seq,
            message_id: m.message_id,
            sender_id: m.sender().to_string(),
        }
    }
}

impl Record for InboxEntry {
    const NAME: &'static str = "parley.InboxEntry";

    fn to_avro(&self) -> Value {
        with_meta(
            &self.meta,
            vec![
                ("user_id", Value::String(self.user_id.clone())),
                (
                    "conversation_id",
                    Value::String(self.conversation_id.clone()),
                ),
                ("seq", Value::Long(self.seq)),
                ("message_id", Value::Uuid(self.message_id)),
                ("sender_id", Value::String(self.sender_id.clone())),
            ],
        )
    }

    fn from_avro(value: Value) -> Result<Self> {
        let mut f = Fields::new(value, Self::NAME)?;
        Ok(Self {
            meta: Meta::take(&mut f)?,
            user_id: f.string("user_id")?,
            conversation_id: f.string("conversation_id")?,
            seq: f.long("seq")?,
            message_id: f.uuid("message_id")?,
            sender_id: f.string("sender_id")?,
        })
    }
}
