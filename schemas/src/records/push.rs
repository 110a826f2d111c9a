//! Push jobs for offline users (topic `push`, key `user_id`).

use apache_avro::types::Value;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{with_meta, Meta};
use crate::codec::Record;
use crate::error::Result;
use crate::value::{nullable, Fields};

/// The longest preview a push job carries, in characters.
pub const PREVIEW_CHARS: usize = 120;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushJob {
    #[serde(flatten)]
    pub meta: Meta,
    pub user_id: String,
    pub conversation_id: String,
    pub seq: i64,
    pub message_id: Uuid,
    pub sender_id: String,
    pub title: String,
    pub preview: String,
    pub badge: Option<i32>,
    /// The message mentions the user: pushed even where they muted the conversation.
    #[serde(default)]
    pub mentioned: bool,
}

/// The preview of a sealed message: its text is not put in a push job.
pub const SEALED_PREVIEW: &str = "New message";

impl PushJob {
    /// The push job of message `m` (at `seq`) for offline `user`, written by `actor`.
    pub fn for_message(actor: &str, user: &str, seq: i64, m: &super::MessagePosted) -> Self {
        PushJob {
            meta: Meta::new(actor),
            user_id: user.to_string(),
            conversation_id: m.conversation_id.clone(),
            seq,
            message_id: m.message_id,
            sender_id: m.sender().to_string(),
            title: m.sender().to_string(),
            // A sealed message's text stays out of the push topic and the provider.
            preview: match m.sealed {
                Some(_) => SEALED_PREVIEW.to_string(),
                None => PushJob::preview_of(&m.body),
            },
            badge: None,
            mentioned: m.mentions().iter().any(|u| u == user),
        }
    }

    /// The first [`PREVIEW_CHARS`] characters of a body, cut on a character boundary.
    pub fn preview_of(body: &str) -> String {
        body.chars().take(PREVIEW_CHARS).collect()
    }
}

impl Record for PushJob {
    const NAME: &'static str = "parley.PushJob";

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
                ("title", Value::String(self.title.clone())),
                ("preview", Value::String(self.preview.clone())),
                ("badge", nullable(self.badge.map(Value::Int))),
                ("mentioned", Value::Boolean(self.mentioned)),
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
            title: f.string("title")?,
            preview: f.string("preview")?,
            badge: f.opt_int("badge")?,
            mentioned: f.boolean("mentioned")?,
        })
    }
}
