//! History pages for members, whatever the transport.
//!
//! A member sees the messages after the record that made them a member: one added to a
//! group does not read what was said before they joined.
//!
//! A page is read only once the projector has applied the conversation's partition up to
//! its upper bound (`before_seq`, or the log's end if that is nearer or there is none):
//! a client filling a gap it saw in live delivery gets the missing messages, and one that
//! opens history right after a message reached it live finds it there, even when the
//! projector is behind the fanout-workers (read-your-log).

use std::time::Duration;

use parley_projector::views::{HistoryPage, HistoryQuery};

use crate::error::ApiError;
use crate::membership::{ensure_member, log_end};
use crate::service::Shared;

/// How long a history read waits for the projector to reach its upper bound.
const BARRIER_WAIT: Duration = Duration::from_secs(5);

/// `q` bounded to what a member who joined at offset `joined` sees: the messages after
/// it. Every read of history on a reader's behalf (pages, sync, long-poll) goes through it.
pub fn from_join(mut q: HistoryQuery, joined: Option<i64>) -> HistoryQuery {
    if let Some(j) = joined {
        q.after = Some(q.after.map_or(j, |a| a.max(j)));
    }
    q
}

/// The offset after which `user` reads `conversation` (their join, or its creation with
/// `full_history`): `not_member` unless they are a member now. Every reader's check.
pub async fn joined(state: &Shared, conversation: &str, user: &str) -> Result<i64, ApiError> {
    ensure_member(state, conversation, user).await?;
    state
        .views
        .history_from(conversation, user)
        .await?
        .ok_or_else(|| ApiError::not_member(conversation))
}

pub async fn page(
    state: &Shared,
    user: &str,
    conversation: &str,
    q: HistoryQuery,
) -> Result<HistoryPage, ApiError> {
    state
        .limits
        .check(crate::limits::Limit::Read(crate::limits::Read::Page), user)?;
    let since = joined(state, conversation, user).await?;
    let mut q = from_join(q, Some(since));
    q.viewer = Some(user.to_string());
    if q.before.is_some_and(|b| b <= since + 1) {
        return Ok(HistoryPage {
            messages: Vec::new(),
            changes: Vec::new(),
            has_more: false,
        });
    }
    let (p, end) = log_end(state, conversation).await?;
    let target = q.before.map_or(end, |b| b.min(end)).max(0);
    if !state
        .views
        .wait_applied(&[(p, target)], BARRIER_WAIT)
        .await?
    {
        return Err(ApiError::unavailable(
            "the views are behind the log; try again",
        ));
    }
    Ok(state.views.history(conversation, q).await?)
}
