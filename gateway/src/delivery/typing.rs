//! Typing indicators: a member says it is (or stopped) typing. The record goes to
//! `ephemeral` (short retention, never in history); fanout-workers route it live to the
//! conversation's other online members. It expires by itself: a client shows it until
//! `expires_at`-worth of time passes without a refresh.

use std::time::Duration;

use parley_schemas::{now_millis, Meta, TypingChanged};

use crate::error::ApiError;
use crate::membership::ensure_member;
use crate::service::Shared;

/// How long a typing indicator lasts without a refresh.
pub const TYPING_TTL: Duration = Duration::from_secs(6);

pub async fn record(
    state: &Shared,
    user: &str,
    conversation: &str,
    active: bool,
) -> Result<(), ApiError> {
    ensure_member(state, conversation, user).await?;
    let record = TypingChanged {
        meta: Meta::new(user),
        conversation_id: conversation.to_string(),
        active,
        expires_at: now_millis() + TYPING_TTL.as_millis() as i64,
    };
    state
        .append_about(&state.config.topics.ephemeral, conversation, &record)
        .await?;
    Ok(())
}
