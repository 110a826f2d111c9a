//! Typing indicators (topic `ephemeral`): never part of history.

use apache_avro::types::Value;
use serde::{Deserialize, Serialize};

use super::{with_meta, Meta};
use crate::codec::Record;
use crate::error::Result;
use crate::value::Fields;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypingChanged {
    #[serde(flatten)]
    pub meta: Meta,
    pub conversation_id: String,
    pub active: bool,
    /// After this instant (ms since epoch) the indicator is stale and must be dropped.
    pub expires_at: i64,
}

impl Record for TypingChanged {
    const NAME: &'static str = "parley.TypingChanged";

    fn to_avro(&self) -> Value {
        with_meta(
            &self.meta,
            vec![
                (
                    "conversation_id",
                    Value::String(self.conversation_id.clone()),
                ),
                ("active", Value::Boolean(self.active)),
                ("expires_at", Value::TimestampMillis(self.expires_at)),
            ],
        )
    }

    fn from_avro(value: Value) -> Result<Self> {
        let mut f = Fields::new(value, Self::NAME)?;
        Ok(Self {
            meta: Meta::take(&mut f)?,
            conversation_id: f.string("conversation_id")?,
            active: f.boolean("active")?,
            expires_at: f.long("expires_at")?,
        })
    }
}
