//! The Rust type of every log record. Each has a schema in `schemas/avro/`; every record
//! starts with the same [`Meta`] fields: `event_id`, `occurred_at` and `actor`.

mod any;
mod conversation;
mod dead_letter;
mod delivery;
mod device;
mod inbox;
mod key;
mod message;
mod presence;
mod presence_ack;
mod push;
mod receipt;
mod typing;

use apache_avro::types::Value;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use any::AnyRecord;
pub use conversation::{
    ConversationCreated, ConversationKind, GroupSettingsChanged, MemberRemoved, MemberRoleSet,
    MembersAdded, MessagesExpired,
};
pub use dead_letter::{DeadLetter, DEAD_LETTER_VALUE_MAX};
pub use delivery::DeliveryBatch;
pub use device::{ConversationMuted, DeviceRegistered, PresenceVisibility, PushOptedIn};
pub use inbox::InboxEntry;
pub use key::{DataKey, TransitKey, UserErased};
pub use message::{
    hide_names, open_names, AttachmentRef, MessageDeleted, MessageEdited, MessagePosted,
    ReactionSet, Sealed, SealedBody,
};
pub use presence::{PresenceUpdated, SlotLease};
pub use presence_ack::PresenceAcked;
pub use push::PushJob;
pub use receipt::{ReceiptKind, ReceiptRecorded};
pub use typing::TypingChanged;

use crate::error::Result;
use crate::value::Fields;

/// The fields every record starts with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub event_id: Uuid,
    /// Milliseconds since the Unix epoch, UTC.
    pub occurred_at: i64,
    /// A user id, or a role such as `fanout:<id>`.
    pub actor: String,
}

impl Meta {
    /// A fresh event id, stamped now.
    pub fn new(actor: impl Into<String>) -> Self {
        Meta {
            event_id: Uuid::new_v4(),
            occurred_at: now_millis(),
            actor: actor.into(),
        }
    }

    pub(crate) fn fields(&self) -> [(&'static str, Value); 3] {
        [
            ("event_id", Value::Uuid(self.event_id)),
            ("occurred_at", Value::TimestampMillis(self.occurred_at)),
            ("actor", Value::String(self.actor.clone())),
        ]
    }

    pub(crate) fn write_binary(&self, w: &mut crate::binary::Writer) {
        w.uuid(&self.event_id);
        w.long(self.occurred_at);
        w.string(&self.actor);
    }

    pub(crate) fn read_binary(r: &mut crate::binary::Reader) -> Result<Self> {
        Ok(Meta {
            event_id: r.uuid()?,
            occurred_at: r.long()?,
            actor: r.string()?,
        })
    }

    pub(crate) fn take(f: &mut Fields) -> Result<Self> {
        Ok(Meta {
            event_id: f.uuid("event_id")?,
            occurred_at: f.long("occurred_at")?,
            actor: f.string("actor")?,
        })
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Builds a record value: the meta fields, then `rest`.
pub(crate) fn with_meta(meta: &Meta, rest: Vec<(&'static str, Value)>) -> Value {
    let mut fields: Vec<(&str, Value)> = meta.fields().into_iter().collect();
    fields.extend(rest);
    crate::value::record(fields)
}
