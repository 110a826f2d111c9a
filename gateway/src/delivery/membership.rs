//! The membership pre-check. The log decides membership (every consumer applies the
//! same rules at each record's position); the gateway checks first so that a
//! non-member gets a fast, clear error and nothing is written.
//!
//! A "no" from the projector may only mean it has not applied a recent change yet (the
//! caller just created the conversation, say), so a "no" is asked again after the
//! projector has applied the conversation's partition up to its current end
//! (read-your-log). A "yes" is cached briefly.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use parley_sequencer::partition::partition_for_key;

use crate::error::ApiError;
use crate::service::Shared;

const CACHE_TTL: Duration = Duration::from_secs(5);
const CACHE_MAX: usize = 100_000;
const BARRIER_WAIT: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct MemberCache {
    yes: Mutex<HashMap<(String, String), Instant>>,
}

impl MemberCache {
    fn hit(&self, conv: &str, user: &str) -> bool {
        let yes = self.yes.lock().unwrap_or_else(|p| p.into_inner());
        yes.get(&(conv.to_string(), user.to_string()))
            .is_some_and(|t| t.elapsed() < CACHE_TTL)
    }

    fn put(&self, conv: &str, user: &str) {
        let mut yes = self.yes.lock().unwrap_or_else(|p| p.into_inner());
        if yes.len() >= CACHE_MAX {
            yes.clear();
        }
        yes.insert((conv.to_string(), user.to_string()), Instant::now());
    }

    /// `user` left `conv` (or was removed): asked again next time.
    pub fn forget_member(&self, conv: &str, user: &str) {
        let mut yes = self.yes.lock().unwrap_or_else(|p| p.into_inner());
        yes.remove(&(conv.to_string(), user.to_string()));
    }

    pub fn forget(&self, conv: &str) {
        let mut yes = self.yes.lock().unwrap_or_else(|p| p.into_inner());
        yes.retain(|(c, _), _| c != conv);
    }
}

/// The partition of `events` that holds a conversation.
pub fn partition_of(state: &Shared, conversation: &str) -> i32 {
    partition_for_key(conversation.as_bytes(), state.events_partitions)
}

/// `conversation`'s partition of `events` and the offset its next record will get.
pub async fn log_end(state: &Shared, conversation: &str) -> Result<(i32, i64), ApiError> {
    let p = partition_of(state, conversation);
    let ends = state.log.end_offsets(&state.config.topics.events).await?;
    Ok((p, ends.get(p as usize).copied().unwrap_or(0)))
}

/// Waits until the projector has applied everything in `conversation`'s partition that
/// the log holds now.
pub async fn read_your_log(state: &Shared, conversation: &str) -> Result<bool, ApiError> {
    let (p, end) = log_end(state, conversation).await?;
    Ok(state.views.wait_applied(&[(p, end)], BARRIER_WAIT).await?)
}

/// Ok if `user` is a member of `conversation`; `not_member` if not, whether or not the
/// conversation exists.
pub async fn ensure_member(state: &Shared, conversation: &str, user: &str) -> Result<(), ApiError> {
    if conversation.is_empty() || conversation.len() > 128 {
        return Err(ApiError::bad_request(
            "conversation_id must be 1 to 128 characters",
        ));
    }
    if state.members.hit(conversation, user) {
        return Ok(());
    }
    if state.views.is_member(conversation, user).await? {
        state.members.put(conversation, user);
        return Ok(());
    }
    if !read_your_log(state, conversation).await? {
        return Err(ApiError::unavailable(
            "the views are behind the log; try again",
        ));
    }
    if state.views.is_member(conversation, user).await? {
        state.members.put(conversation, user);
        return Ok(());
    }
    // The same answer whether the conversation exists or not: a direct conversation's
    // id is a public function of its pair, so "exists" would tell anyone who chatted.
    Err(ApiError::not_member(conversation))
}
