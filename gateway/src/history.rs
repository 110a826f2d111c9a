//! History pages for members, whatever the transport.
//!
//! A member sees the messages after the record that made them a member: one added to a
//! group does not read what was said before they joined.
//!
//! A page bounded above (`before_seq`) is read only once the projector has applied the
//! conversation's partition up to that seq (or to the log's end, if that is nearer): a
//! client filling a gap it saw in live delivery gets the missing messages even when the
//! projector is behind the fanout-workers.

use std::time::Duration;

use parley_projector::views::{HistoryPage, HistoryQuery};

use crate::error::ApiError;
use crate::membership::{ensure_member, log_end};
use crate::service::Shared;

/// How long a history read waits for the projector to reach its upper bound.
const BARRIER_WAIT: Duration = Duration::from_secs(5);

pub async fn page(
    state: &Shared,
    user: &str,
    conversation: &str,
    mut q: HistoryQuery,
) -> Result<HistoryPage, ApiError> {
    ensure_member(state, conversation, user).await?;
    let Some(since) = state.views.member_since(conversation, user).await? else {
        return Err(ApiError::not_member(conversation));
    };
    q.after = Some(q.after.map_or(since, |a| a.max(since)));
    if q.before.is_some_and(|b| b <= since + 1) {
        return Ok(HistoryPage {
            messages: Vec::new(),
            has_more: false,
        });
    }
    if let Some(before) = q.before {
        let (p, end) = log_end(state, conversation).await?;
        let target = before.min(end).max(0);
        if !state
            .views
            .wait_applied(&[(p, target)], BARRIER_WAIT)
            .await?
        {
            return Err(ApiError::unavailable(
                "the views are behind the log; try again",
            ));
        }
    }
    Ok(state.views.history(conversation, q).await?)
}
