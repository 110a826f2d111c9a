//! Sending a message, whatever the transport: check, append, and answer with the seq
//! the log gave it — only after the broker has acknowledged it.
//!
//! Retries are idempotent: the message id is `UUIDv5(sender, client_msg_id)`. A retry of
//! a message the views already hold gets the original seq without a second append. A
//! retry that races the original to the log is appended again, and every consumer drops
//! it (first occurrence wins); the gateway then reports the original's seq, which it
//! learns once the projector has applied the append.

use std::time::Duration;

use parley_schemas::frames::ServerFrame;
use parley_schemas::{ids, MessagePosted, Meta};
use uuid::Uuid;

use crate::error::ApiError;
use crate::membership::{ensure_member, partition_of};
use crate::service::Shared;

/// How long the gateway waits for the projector to confirm which occurrence won.
const CONFIRM_WAIT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub message_id: Uuid,
    pub seq: i64,
    pub ts: i64,
}

impl Sent {
    pub fn frame(&self, client_msg_id: &str, conversation_id: &str) -> ServerFrame {
        ServerFrame::Sent {
            client_msg_id: client_msg_id.to_string(),
            message_id: self.message_id,
            conversation_id: conversation_id.to_string(),
            seq: self.seq,
            ts: self.ts,
        }
    }
}

pub fn validate(state: &Shared, client_msg_id: &str, body: &str) -> Result<(), ApiError> {
    if client_msg_id.is_empty() || client_msg_id.len() > 128 {
        return Err(ApiError::bad_request(
            "client_msg_id must be 1 to 128 characters",
        ));
    }
    if body.is_empty() {
        return Err(ApiError::bad_request("body is empty"));
    }
    let max = state.config.max_body_chars;
    if body.chars().count() > max {
        return Err(ApiError::new(
            parley_schemas::frames::ErrorCode::TooLarge,
            format!("body is longer than {max} characters"),
        ));
    }
    Ok(())
}

/// Sends `body` from `sender` to `conversation`.
pub async fn send(
    state: &Shared,
    sender: &str,
    conversation: &str,
    client_msg_id: &str,
    body: &str,
) -> Result<Sent, ApiError> {
    validate(state, client_msg_id, body)?;
    ensure_member(state, conversation, sender).await?;
    let message_id = ids::message_id(sender, client_msg_id);
    if let Some(m) = state.views.message_by_id(conversation, message_id).await? {
        return Ok(Sent {
            message_id,
            seq: m.seq,
            ts: m.ts,
        });
    }
    let record = MessagePosted {
        meta: Meta::new(sender),
        conversation_id: conversation.to_string(),
        message_id,
        client_msg_id: client_msg_id.to_string(),
        body: body.to_string(),
    };
    let ts = record.meta.occurred_at;
    let pos = state.append_event(conversation, &record.into()).await?;
    let mut sent = Sent {
        message_id,
        seq: pos.offset,
        ts,
    };
    // Which occurrence did the log keep? Only a racing retry makes this differ.
    let p = partition_of(state, conversation);
    if state
        .views
        .wait_applied(&[(p, pos.offset + 1)], CONFIRM_WAIT)
        .await
        .unwrap_or(false)
    {
        if let Ok(Some(kept)) = state.views.message_by_id(conversation, message_id).await {
            sent.seq = kept.seq;
            sent.ts = kept.ts;
        }
    }
    Ok(sent)
}
