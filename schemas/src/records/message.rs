//! A posted message (the record whose offset in `events` is its seq_no), and the
//! changes to it made later: an edit, a deletion for everyone, a reaction.

use apache_avro::types::Value;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{with_meta, Meta};
use crate::codec::Record;
use crate::error::Result;
use crate::value::{nullable, Fields};

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
    /// The seq of the message this one replies to (same conversation), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<i64>,
    /// Files sent with it, by reference (the bytes are in the object store).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<AttachmentRef>,
}

/// A file sent with a message: what the log and clients know of it. Its bytes are in
/// the object store under its `attachment_id`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentRef {
    pub attachment_id: String,
    pub name: String,
    pub content_type: String,
    pub size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<i32>,
}

impl AttachmentRef {
    fn to_avro(&self) -> Value {
        crate::value::record(vec![
            ("attachment_id", Value::String(self.attachment_id.clone())),
            ("name", Value::String(self.name.clone())),
            ("content_type", Value::String(self.content_type.clone())),
            ("size", Value::Long(self.size)),
            ("width", nullable(self.width.map(Value::Int))),
            ("height", nullable(self.height.map(Value::Int))),
        ])
    }

    fn from_avro(value: Value) -> Result<Self> {
        let mut f = Fields::new(value, "parley.AttachmentRef")?;
        Ok(Self {
            attachment_id: f.string("attachment_id")?,
            name: f.string("name")?,
            content_type: f.string("content_type")?,
            size: f.long("size")?,
            width: f.opt_int("width")?,
            height: f.opt_int("height")?,
        })
    }
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
                ("reply_to", nullable(self.reply_to.map(Value::Long))),
                (
                    "attachments",
                    Value::Array(
                        self.attachments
                            .iter()
                            .map(AttachmentRef::to_avro)
                            .collect(),
                    ),
                ),
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
            reply_to: f.opt_long("reply_to")?,
            attachments: f
                .array("attachments")?
                .into_iter()
                .map(AttachmentRef::from_avro)
                .collect::<Result<_>>()?,
        })
    }
}

/// `meta.actor` is the editor, `meta.occurred_at` when it was edited.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageEdited {
    #[serde(flatten)]
    pub meta: Meta,
    pub conversation_id: String,
    pub target_seq: i64,
    pub body: String,
}

impl Record for MessageEdited {
    const NAME: &'static str = "parley.MessageEdited";

    fn to_avro(&self) -> Value {
        with_meta(
            &self.meta,
            vec![
                (
                    "conversation_id",
                    Value::String(self.conversation_id.clone()),
                ),
                ("target_seq", Value::Long(self.target_seq)),
                ("body", Value::String(self.body.clone())),
            ],
        )
    }

    fn from_avro(value: Value) -> Result<Self> {
        let mut f = Fields::new(value, Self::NAME)?;
        Ok(Self {
            meta: Meta::take(&mut f)?,
            conversation_id: f.string("conversation_id")?,
            target_seq: f.long("target_seq")?,
            body: f.string("body")?,
        })
    }
}

/// A message deleted for everyone; `meta.actor` deleted it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageDeleted {
    #[serde(flatten)]
    pub meta: Meta,
    pub conversation_id: String,
    pub target_seq: i64,
}

impl Record for MessageDeleted {
    const NAME: &'static str = "parley.MessageDeleted";

    fn to_avro(&self) -> Value {
        with_meta(
            &self.meta,
            vec![
                (
                    "conversation_id",
                    Value::String(self.conversation_id.clone()),
                ),
                ("target_seq", Value::Long(self.target_seq)),
            ],
        )
    }

    fn from_avro(value: Value) -> Result<Self> {
        let mut f = Fields::new(value, Self::NAME)?;
        Ok(Self {
            meta: Meta::take(&mut f)?,
            conversation_id: f.string("conversation_id")?,
            target_seq: f.long("target_seq")?,
        })
    }
}

/// `meta.actor`'s reaction `emoji` to the message at `target_seq`, set (`on`) or taken back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReactionSet {
    #[serde(flatten)]
    pub meta: Meta,
    pub conversation_id: String,
    pub target_seq: i64,
    pub emoji: String,
    pub on: bool,
}

impl Record for ReactionSet {
    const NAME: &'static str = "parley.ReactionSet";

    fn to_avro(&self) -> Value {
        with_meta(
            &self.meta,
            vec![
                (
                    "conversation_id",
                    Value::String(self.conversation_id.clone()),
                ),
                ("target_seq", Value::Long(self.target_seq)),
                ("emoji", Value::String(self.emoji.clone())),
                ("on", Value::Boolean(self.on)),
            ],
        )
    }

    fn from_avro(value: Value) -> Result<Self> {
        let mut f = Fields::new(value, Self::NAME)?;
        Ok(Self {
            meta: Meta::take(&mut f)?,
            conversation_id: f.string("conversation_id")?,
            target_seq: f.long("target_seq")?,
            emoji: f.string("emoji")?,
            on: f.boolean("on")?,
        })
    }
}
