//! The client protocol: JSON frames over WebSocket (and the long-poll fallback), each an
//! object with a `"type"`. `docs/protocol.md` describes them with examples. Frame and
//! field names are public: fields may be added, never renamed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::records::ReceiptKind;

/// Frames a client sends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    /// Post a message. Answered by `sent` once the log has it, or by `error`.
    Send {
        client_msg_id: String,
        conversation_id: String,
        body: String,
        /// This `client_msg_id` was sent before (a retry): the gateway looks it up
        /// before appending. A first attempt is appended at once.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        retry: bool,
        /// The seq of the message of this conversation it replies to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<i64>,
        /// Files uploaded for it (`POST /v1/uploads`), each used once.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        attachments: Vec<crate::frames::Attach>,
    },
    /// Edit one's own message (`seq`). Answered by `changed` once the log has the edit,
    /// or by `error`.
    Edit {
        conversation_id: String,
        seq: i64,
        body: String,
        #[serde(default)]
        request_id: Option<String>,
    },
    /// Delete a message for everyone. Answered like `edit`.
    Delete {
        conversation_id: String,
        seq: i64,
        #[serde(default)]
        request_id: Option<String>,
    },
    /// Set (`on`, the default) or take back a reaction. Answered like `edit`.
    React {
        conversation_id: String,
        seq: i64,
        emoji: String,
        #[serde(default = "yes")]
        on: bool,
        #[serde(default)]
        request_id: Option<String>,
    },
    /// Catch up: everything after each cursor (conversation → last seq seen); a
    /// conversation not listed means from the beginning.
    Sync {
        #[serde(default)]
        cursors: BTreeMap<String, i64>,
        /// Echoed in `synced` (or in the `error` if the sync fails).
        #[serde(default)]
        request_id: Option<String>,
    },
    /// Delivery receipt: the client has everything of the conversation up to `seq`.
    Ack { conversation_id: String, seq: i64 },
    /// Read receipt.
    Read { conversation_id: String, seq: i64 },
    Typing {
        conversation_id: String,
        active: bool,
    },
    /// A page of history: messages with `after_seq < seq < before_seq`.
    History {
        conversation_id: String,
        #[serde(default)]
        after_seq: Option<i64>,
        #[serde(default)]
        before_seq: Option<i64>,
        #[serde(default)]
        limit: Option<u32>,
        #[serde(default)]
        request_id: Option<String>,
    },
    Ping {
        #[serde(default)]
        nonce: Option<String>,
    },
    /// Who of these users is online. Answered by `presence_result`; users who share no
    /// conversation with the caller are `unknown`.
    PresenceQuery {
        user_ids: Vec<String>,
        #[serde(default)]
        request_id: Option<String>,
    },
}

fn yes() -> bool {
    true
}

impl ServerFrame {
    /// Every `type` a server frame has (each variant's), for labels.
    pub const KINDS: [&'static str; 17] = [
        "ready",
        "sent",
        "message",
        "sync_batch",
        "synced",
        "history",
        "receipt",
        "receipt_counts",
        "typing",
        "pong",
        "presence",
        "presence_result",
        "error",
        "changed",
        "message_edited",
        "message_deleted",
        "reaction",
    ];

    /// The `type` of an encoded server frame, read from its first field (serde writes
    /// the tag first); `"other"` for anything else.
    pub fn kind_of(encoded: &str) -> &'static str {
        let kind = encoded
            .strip_prefix(r#"{"type":""#)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or("");
        Self::KINDS
            .iter()
            .find(|k| **k == kind)
            .copied()
            .unwrap_or("other")
    }
}

impl ClientFrame {
    /// The frame's `type`, as a label.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientFrame::Send { .. } => "send",
            ClientFrame::Sync { .. } => "sync",
            ClientFrame::Ack { .. } => "ack",
            ClientFrame::Read { .. } => "read",
            ClientFrame::Typing { .. } => "typing",
            ClientFrame::History { .. } => "history",
            ClientFrame::Ping { .. } => "ping",
            ClientFrame::PresenceQuery { .. } => "presence_query",
            ClientFrame::Edit { .. } => "edit",
            ClientFrame::Delete { .. } => "delete",
            ClientFrame::React { .. } => "react",
        }
    }
}

/// What a user's presence is, as the caller may know it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceStatus {
    Online,
    Offline,
    /// The caller shares no conversation with the user (or the user does not exist).
    Unknown,
}

/// One user's presence in a `presence_result` (and `GET /v1/presence`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceView {
    pub user_id: String,
    pub status: PresenceStatus,
    /// When the user's last device went away (ms since the Unix epoch); `null` while
    /// online, unknown, or never seen.
    pub last_seen: Option<i64>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A file to send with a message, as the sender names it: the id its upload slot was
/// given, the name to show, and an image's size if known. Its type and length are the
/// ones the slot was given and the store holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attach {
    pub attachment_id: String,
    /// The file name shown to readers (1 to 255 characters, no path).
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<i32>,
}

/// The message a reply quotes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyTo {
    /// Its seq, in the same conversation.
    pub seq: i64,
    /// Its author, when the server knows the quoted message (history does; a live
    /// `message` frame carries the seq alone, and the client quotes from its own copy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_id: Option<String>,
    /// The first [`REPLY_PREVIEW_CHARS`] characters of its **current** text; absent
    /// when it was deleted or is not known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<String>,
    /// The quoted message was deleted for everyone.
    #[serde(default, skip_serializing_if = "is_false")]
    pub deleted: bool,
}

/// A kept change to a message, at its own seq: what a live `message_edited`,
/// `message_deleted` or `reaction` frame carries, and what `sync_batch` and long-poll
/// pages list (`changes`) for a client to apply to the messages it holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MessageChange {
    MessageEdited {
        conversation_id: String,
        seq: i64,
        target_seq: i64,
        sender_id: String,
        body: String,
        edited_at: i64,
    },
    MessageDeleted {
        conversation_id: String,
        seq: i64,
        target_seq: i64,
        actor: String,
    },
    Reaction {
        conversation_id: String,
        seq: i64,
        target_seq: i64,
        user_id: String,
        emoji: String,
        on: bool,
    },
}

impl MessageChange {
    pub fn seq(&self) -> i64 {
        match self {
            MessageChange::MessageEdited { seq, .. }
            | MessageChange::MessageDeleted { seq, .. }
            | MessageChange::Reaction { seq, .. } => *seq,
        }
    }

    /// The live frame of the same change (the same JSON, without a `prev_change`: a
    /// page's changes are a whole stretch of the log, not links of a chain).
    pub fn into_frame(self) -> ServerFrame {
        match self {
            MessageChange::MessageEdited {
                conversation_id,
                seq,
                target_seq,
                sender_id,
                body,
                edited_at,
            } => ServerFrame::MessageEdited {
                conversation_id,
                seq,
                target_seq,
                sender_id,
                body,
                edited_at,
                prev_change: None,
            },
            MessageChange::MessageDeleted {
                conversation_id,
                seq,
                target_seq,
                actor,
            } => ServerFrame::MessageDeleted {
                conversation_id,
                seq,
                target_seq,
                actor,
                prev_change: None,
            },
            MessageChange::Reaction {
                conversation_id,
                seq,
                target_seq,
                user_id,
                emoji,
                on,
            } => ServerFrame::Reaction {
                conversation_id,
                seq,
                target_seq,
                user_id,
                emoji,
                on,
                prev_change: None,
            },
        }
    }
}

/// How many characters of the quoted message a [`ReplyTo`] shows.
pub const REPLY_PREVIEW_CHARS: usize = 200;

/// A message as clients see it, live or in history.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageView {
    pub conversation_id: String,
    pub seq: i64,
    /// seq of the conversation's previous message; `null` for its first message.
    pub prev_seq: Option<i64>,
    /// The router could not tell the previous message (e.g. right after it took the
    /// conversation's partition over): `prev_seq` says nothing, and a client that wants
    /// a complete conversation fetches history up to and including this seq.
    #[serde(default, skip_serializing_if = "is_false")]
    pub prev_unknown: bool,
    pub message_id: Uuid,
    pub sender_id: String,
    /// The current text; empty once deleted.
    pub body: String,
    /// When the gateway accepted it, ms since the Unix epoch.
    pub ts: i64,
    /// The message it replies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<ReplyTo>,
    /// Its author edited it; `body` is the latest edit's text.
    #[serde(default, skip_serializing_if = "is_false")]
    pub edited: bool,
    /// When the latest edit was made (ms since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<i64>,
    /// Deleted for everyone: a tombstone at its seq, without text.
    #[serde(default, skip_serializing_if = "is_false")]
    pub deleted: bool,
    /// Emoji → how many members reacted with it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reactions: BTreeMap<String, u64>,
    /// The emoji the reader has set on it (history only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub my_reactions: Vec<String>,
    /// The seq of the latest change this copy reflects: a change at or before it is
    /// already applied (a copy from history or sync), a later one is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_seq: Option<i64>,
    /// The conversation's change chain: seq of the latest change to a message (edit,
    /// deletion, reaction) before this one; -1 when there was none; absent when not
    /// known. A client that does not hold every change up to it has missed one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_change: Option<i64>,
    /// Files sent with it: each downloads from `GET /v1/attachments/{attachment_id}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<crate::AttachmentRef>,
    /// When it disappears (ms since the epoch): sent while its conversation had
    /// disappearing messages on (history pages; a live copy does not carry it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

/// Frames the server sends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
// `Message` is the largest variant and the most common frame by far: boxing it would
// cost an allocation per delivered message to save bytes on the rare ones.
#[allow(clippy::large_enum_variant)]
pub enum ServerFrame {
    /// The session is open. With `live: true`, every message appended from now on will
    /// be delivered live (the fanout-workers have seen this session's presence).
    Ready {
        user_id: String,
        session_id: String,
        gateway_id: i32,
        live: bool,
    },
    /// The send is in the log: `seq` is its offset there, and history keeps it there.
    Sent {
        client_msg_id: String,
        message_id: Uuid,
        conversation_id: String,
        seq: i64,
        /// seq of the conversation's previous message (`null`: this is the first).
        prev_seq: Option<i64>,
        /// As on `message`: `prev_seq` says nothing (the router that confirmed it did
        /// not know the message before); history up to this seq tells.
        #[serde(default, skip_serializing_if = "is_false")]
        prev_unknown: bool,
        ts: i64,
        /// As on `message`: the conversation's latest change before it (-1: none).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prev_change: Option<i64>,
    },
    Message(MessageView),
    SyncBatch {
        conversation_id: String,
        messages: Vec<MessageView>,
        /// The changes made in the same stretch of the log (after the cursor, up to the
        /// last message of this batch or the sync's end): apply each to the message it
        /// names, if held.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        changes: Vec<MessageChange>,
        has_more: bool,
    },
    /// Catch-up is complete; live delivery follows.
    Synced {
        #[serde(skip_serializing_if = "Option::is_none", default)]
        request_id: Option<String>,
    },
    History {
        conversation_id: String,
        request_id: Option<String>,
        messages: Vec<MessageView>,
        /// For a page read forward (`after_seq` given): the changes made to messages in
        /// the same stretch of the log, as in `sync_batch`.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        changes: Vec<MessageChange>,
        has_more: bool,
    },
    Receipt {
        conversation_id: String,
        user_id: String,
        kind: ReceiptKind,
        seq: i64,
    },
    /// In a large group, receipts are counted, not shown one by one: how many members
    /// have received and read up to `seq` (the group's latest message this gateway
    /// routed). Sent at a bounded rate.
    ReceiptCounts {
        conversation_id: String,
        seq: i64,
        delivered: u64,
        read: u64,
    },
    Typing {
        conversation_id: String,
        user_id: String,
        active: bool,
        /// Drop the indicator after this instant (ms since the Unix epoch) unless refreshed.
        expires_at: i64,
    },
    Pong {
        nonce: Option<String>,
    },
    /// A contact came online or went away (coalesced: at most one per contact per
    /// interval, and only when the state differs from the last one sent).
    Presence {
        user_id: String,
        online: bool,
        /// When the user's last device went away; `null` while online.
        last_seen: Option<i64>,
    },
    PresenceResult {
        #[serde(skip_serializing_if = "Option::is_none", default)]
        request_id: Option<String>,
        users: Vec<PresenceView>,
    },
    /// An `edit`, `delete` or `react` is in the log at `seq` (its own seq, after every
    /// message before it); it changes the message at `target_seq`.
    Changed {
        #[serde(skip_serializing_if = "Option::is_none", default)]
        request_id: Option<String>,
        conversation_id: String,
        seq: i64,
        target_seq: i64,
    },
    /// The message at `target_seq` was edited by its author (`sender_id`): its text is
    /// now `body`. `seq` is the edit's own place in the conversation's log.
    MessageEdited {
        conversation_id: String,
        seq: i64,
        target_seq: i64,
        sender_id: String,
        body: String,
        edited_at: i64,
        /// The change before it (-1: none; absent: not known), as on `message`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prev_change: Option<i64>,
    },
    /// The message at `target_seq` was deleted for everyone (by `actor`): drop its text.
    MessageDeleted {
        conversation_id: String,
        seq: i64,
        target_seq: i64,
        actor: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prev_change: Option<i64>,
    },
    /// `user_id` set (`on`) or took back reaction `emoji` on the message at
    /// `target_seq`: its count of that emoji goes up or down by one.
    Reaction {
        conversation_id: String,
        seq: i64,
        target_seq: i64,
        user_id: String,
        emoji: String,
        on: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prev_change: Option<i64>,
    },
    Error {
        code: ErrorCode,
        message: String,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        client_msg_id: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        request_id: Option<String>,
        /// With `rate_limited`: how long to wait before trying again.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        retry_after_ms: Option<u64>,
    },
}

/// Why a request failed. Each maps to one HTTP status for REST.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Malformed frame or body, bad UTF-8, unknown frame type, missing field.
    BadRequest,
    /// Missing, malformed or expired token.
    Unauthorized,
    /// The caller is not a member of the conversation.
    NotMember,
    /// A member, but not allowed this (removing someone not below you in a group,
    /// anyone from a direct conversation; a role or setting change by someone who may
    /// not make it).
    Forbidden,
    NotFound,
    /// REST only: the path has no such method (the `Allow` header lists those it has).
    MethodNotAllowed,
    /// Frame or body over the size limit.
    TooLarge,
    /// The group would grow beyond its member cap.
    GroupFull,
    /// The request contradicts the state it would change: a reaction already as asked,
    /// a message that has all the distinct reactions it may carry.
    Conflict,
    /// The message was deleted for everyone: it takes no edits or reactions.
    Gone,
    RateLimited,
    /// The log or a view could not be reached in time; retrying may help.
    Unavailable,
    /// The client could not keep up and was cut off; reconnect and sync.
    SlowConsumer,
    Internal,
}

impl ErrorCode {
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::NotMember | ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::TooLarge => 413,
            ErrorCode::GroupFull | ErrorCode::Conflict => 409,
            ErrorCode::Gone => 410,
            ErrorCode::RateLimited => 429,
            ErrorCode::Unavailable | ErrorCode::SlowConsumer => 503,
            ErrorCode::Internal => 500,
        }
    }

    /// The code of an answer with HTTP status `status` that did not say its own (the
    /// router's refusals).
    pub fn from_http_status(status: u16) -> Self {
        match status {
            401 => ErrorCode::Unauthorized,
            403 => ErrorCode::Forbidden,
            404 => ErrorCode::NotFound,
            405 => ErrorCode::MethodNotAllowed,
            413 => ErrorCode::TooLarge,
            429 => ErrorCode::RateLimited,
            503 => ErrorCode::Unavailable,
            400..=499 => ErrorCode::BadRequest,
            _ => ErrorCode::Internal,
        }
    }

    /// The code as it is written in frames, as a label.
    pub fn label(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::NotMember => "not_member",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::GroupFull => "group_full",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Gone => "gone",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::SlowConsumer => "slow_consumer",
            ErrorCode::Internal => "internal",
        }
    }

    /// Whether the same request may succeed if retried later.
    pub fn retryable(self) -> bool {
        matches!(self, ErrorCode::Unavailable | ErrorCode::RateLimited)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn kinds_and_labels_are_what_serde_writes() {
        use super::*;
        let frames = [
            ServerFrame::Synced { request_id: None },
            ServerFrame::Pong { nonce: None },
            ServerFrame::Changed {
                request_id: None,
                conversation_id: "c".into(),
                seq: 2,
                target_seq: 1,
            },
            ServerFrame::Reaction {
                conversation_id: "c".into(),
                seq: 2,
                target_seq: 1,
                user_id: "u".into(),
                emoji: "👍".into(),
                on: true,
                prev_change: Some(-1),
            },
            ServerFrame::Error {
                code: ErrorCode::Forbidden,
                message: String::new(),
                client_msg_id: None,
                request_id: None,
                retry_after_ms: None,
            },
        ];
        for f in frames {
            let text = serde_json::to_string(&f).unwrap();
            let tag = serde_json::from_str::<serde_json::Value>(&text).unwrap()["type"].clone();
            assert_eq!(ServerFrame::kind_of(&text), tag.as_str().unwrap());
        }
        assert_eq!(ServerFrame::kind_of("[1]"), "other");
        for code in [
            ErrorCode::BadRequest,
            ErrorCode::Unauthorized,
            ErrorCode::NotMember,
            ErrorCode::Forbidden,
            ErrorCode::NotFound,
            ErrorCode::MethodNotAllowed,
            ErrorCode::TooLarge,
            ErrorCode::GroupFull,
            ErrorCode::Conflict,
            ErrorCode::Gone,
            ErrorCode::RateLimited,
            ErrorCode::Unavailable,
            ErrorCode::SlowConsumer,
            ErrorCode::Internal,
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), code.label());
        }
    }

    use super::*;

    #[test]
    fn a_change_in_a_page_is_the_live_frame() {
        let change = MessageChange::Reaction {
            conversation_id: "c".into(),
            seq: 9,
            target_seq: 3,
            user_id: "u".into(),
            emoji: "👍".into(),
            on: false,
        };
        assert_eq!(
            serde_json::to_value(&change).unwrap(),
            serde_json::to_value(change.clone().into_frame()).unwrap()
        );
        let edit = MessageChange::MessageEdited {
            conversation_id: "c".into(),
            seq: 9,
            target_seq: 3,
            sender_id: "u".into(),
            body: "b".into(),
            edited_at: 1,
        };
        assert_eq!(
            serde_json::to_value(&edit).unwrap(),
            serde_json::to_value(edit.clone().into_frame()).unwrap()
        );
    }

    #[test]
    fn send_frame_parses_from_the_documented_json() {
        let f: ClientFrame = serde_json::from_str(
            r#"{"type":"send","client_msg_id":"c1","conversation_id":"k","body":"hi"}"#,
        )
        .unwrap();
        assert_eq!(
            f,
            ClientFrame::Send {
                client_msg_id: "c1".into(),
                conversation_id: "k".into(),
                body: "hi".into(),
                retry: false,
                reply_to: None,
                attachments: Vec::new(),
            }
        );
    }

    #[test]
    fn unknown_types_and_fields_are_errors() {
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"nope"}"#).is_err());
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"ping","x":1}"#).is_err());
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"send"}"#).is_err());
    }

    #[test]
    fn server_frames_carry_their_type() {
        let j = serde_json::to_value(ServerFrame::Synced { request_id: None }).unwrap();
        assert_eq!(j, serde_json::json!({"type": "synced"}));
        let e = ServerFrame::Error {
            code: ErrorCode::NotMember,
            message: "not a member".into(),
            client_msg_id: Some("c1".into()),
            request_id: None,
            retry_after_ms: None,
        };
        assert_eq!(
            serde_json::to_value(e).unwrap(),
            serde_json::json!({"type":"error","code":"not_member","message":"not a member","client_msg_id":"c1"})
        );
    }
}
