//! The values stored in each column family (JSON: readable with `ldb`, and
//! deterministic, which the rebuild checksum relies on).

use std::collections::BTreeMap;

use parley_schemas::ConversationKind;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationRow {
    pub kind: ConversationKind,
    pub title: Option<String>,
    /// The partition of `events` that holds it.
    pub partition: i32,
    /// Offset of its `ConversationCreated`.
    pub created_at: i64,
    /// seq of its latest message.
    pub last_seq: Option<i64>,
    /// seq of its latest kept change to a message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_change: Option<i64>,
    /// How many members it has (the group cap is checked against it).
    #[serde(default)]
    pub members: usize,
    /// Who created it (the actor of its `ConversationCreated`): in a group, the member
    /// who ranks above its admins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator: Option<String>,
    /// A group whose members read its history from its creation, not from their add on
    /// (`GroupSettingsChanged`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub full_history: bool,
    /// Disappearing messages: each message posted from now on disappears this long
    /// after it was posted (`GroupSettingsChanged`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disappear_after_ms: Option<i64>,
    /// The offset of the record that set `disappear_after_ms`: the messages after it
    /// have it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disappear_since: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRow {
    /// Offset of the event that made them a member.
    pub since: i64,
    /// Offset of the `MemberRoleSet` that made them an admin, while they are one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_since: Option<i64>,
    /// In a direct conversation, the offset of their first message since they became a
    /// member: having written to the other is their consent to being shown to them
    /// (presence).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrote: Option<i64>,
}

impl MemberRow {
    /// A member from `offset` on, with no role, who has not written.
    pub fn since(offset: i64) -> Self {
        MemberRow {
            since: offset,
            admin_since: None,
            wrote: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRow {
    pub message_id: Uuid,
    pub sender_id: String,
    /// The current text: the last kept edit's, or empty once deleted.
    pub body: String,
    pub ts: i64,
    /// seq of the conversation's previous message.
    pub prev_seq: Option<i64>,
    /// The seq it replies to, as posted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<i64>,
    /// When its last kept edit was made (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<i64>,
    /// Deleted for everyone: the body is gone, the row stays (a tombstone), so `prev_seq`
    /// chains and cursors stay whole.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    /// Emoji → how many members have it set (no zero counts).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reactions: BTreeMap<String, u64>,
    /// seq of the latest kept change to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_seq: Option<i64>,
    /// seq of the conversation's latest kept change before it; -1 when there was none
    /// (absent in rows written before it was kept: not known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_change: Option<i64>,
    /// Files sent with it (references; cleared when it is deleted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<parley_schemas::AttachmentRef>,
    /// Its body as the log holds it, sealed under its data key (`body` is then empty
    /// in the database, and filled when the row is read: [`super::Store::open_row`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<parley_schemas::Sealed>,
    /// The id `sealed` is bound to when it is not `message_id`: the event id of the
    /// edit whose text it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_for: Option<Uuid>,
    /// When it disappears (ms): posted while its conversation had disappearing messages
    /// on. Cleared once it has ([`MessageRow::blank`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// The data key its files' names are sealed under: its first one, kept (not erased
    /// by an edit) until the message goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub names_key: Option<String>,
}

impl MessageRow {
    /// Deleted for everyone (or its author erased): no text, no files; the row stays.
    pub fn blank(&mut self) {
        self.body.clear();
        self.sealed = None;
        self.sealed_for = None;
        self.deleted = true;
        self.attachments.clear();
        self.edited_at = None;
        self.expires_at = None;
        self.names_key = None;
    }

    /// The data keys to erase when it goes: its text's, and its files' names'.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.sealed.iter().map(|s| s.key_id.clone()).collect();
        if let Some(k) = &self.names_key {
            if !keys.contains(k) {
                keys.push(k.clone());
            }
        }
        keys
    }
}

/// A sealed message applied before its data key: what it takes to write the key
/// again from the record's transit-wrapped copy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitingKey {
    pub conversation: String,
    pub seq: i64,
    pub owner: String,
    pub transit_key: String,
    /// The data key wrapped under the transit key (nonce, then ciphertext).
    pub transit_wrapped: Vec<u8>,
    /// When it was applied (ms since the epoch, this replica's clock).
    pub since_ms: i64,
}

/// A message waiting for an offline user (`inbox`: user, conversation, seq → row).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxRow {
    pub message_id: Uuid,
    pub sender_id: String,
}

/// How far a member has received and read a conversation (`receipts`: conversation,
/// user → row). Both only grow; reading implies having received.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptRow {
    pub delivered: Option<i64>,
    pub read: Option<i64>,
}
