//! History pages for members, whatever the transport.
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
    q: HistoryQuery,
) -> Result<HistoryPage, ApiError> {
    ensure_member(state, conversation, user).await?;
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
