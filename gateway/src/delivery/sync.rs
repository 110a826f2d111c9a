//! Catching a session up: `sync {cursors}` → `sync_batch` pages → `synced`.
//!
//! The order is what makes it gap-free:
//! 1. the session's presence is acknowledged first (it is *live*): every message
//!    appended from then on is routed to this gateway;
//! 2. the log's end offsets are taken, and the projector must have applied them (the
//!    read-your-log barrier), so every message appended before that moment is in the
//!    views;
//! 3. the views answer with everything after each cursor.
//!
//! What 1 covers and what 3 covers overlap; nothing falls between them. Clients drop the
//! overlap by message id.
//!
//! Every page is bounded above by the end offset the barrier took for its partition:
//! what was appended after it comes by the live stream, which applies membership at each
//! record's position. So a member removed while her sync is still running (a slow reader
//! whose pages are produced only as her socket drains) gets nothing of that
//! conversation posted after the barrier, whatever the views hold by the time her page
//! is read.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use parley_projector::views::{ConversationSummary, HistoryPage, HistoryQuery};
use parley_schemas::frames::ServerFrame;

use crate::error::ApiError;
use crate::service::Shared;
use crate::sessions::Session;
use crate::ws::encode;

/// Messages per `sync_batch` frame, at most (and by default).
pub const PAGE: u32 = 500;
/// Most cursors one `sync` may carry.
pub const MAX_CURSORS: usize = 100_000;
/// Conversations whose first page is read ahead while earlier ones are being sent.
const READ_AHEAD: usize = 8;

/// What a sync sent.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SyncStats {
    pub conversations: usize,
    pub messages: usize,
}

/// The log's end offsets of `events`, once the projector has applied them.
pub async fn barrier(state: &Shared) -> Result<Vec<i64>, ApiError> {
    let ends = state.log.end_offsets(&state.config.topics.events).await?;
    let offsets: Vec<(i32, i64)> = ends
        .iter()
        .enumerate()
        .map(|(p, o)| (p as i32, *o))
        .collect();
    if !state
        .views
        .wait_applied(&offsets, state.config.sync_wait)
        .await?
    {
        return Err(ApiError::unavailable(
            "the views are behind the log; retry the sync",
        ));
    }
    Ok(ends)
}

/// Runs one sync of `session`, ending with `synced` (or an error for the caller to send).
pub async fn run(
    state: &Shared,
    session: &Arc<Session>,
    cursors: BTreeMap<String, i64>,
    request_id: Option<String>,
) -> Result<SyncStats, ApiError> {
    if cursors.len() > MAX_CURSORS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_CURSORS} cursors per sync"
        )));
    }
    let user = &session.user;
    state
        .limits
        .check(crate::limits::Limit::Read(crate::limits::Read::List), user)?;
    if !state.presence.wait_live(user, state.config.sync_wait).await {
        return Err(ApiError::unavailable(
            "presence is not acknowledged yet; retry the sync",
        ));
    }
    let ends = barrier(state).await?;
    let todo: Vec<(ConversationSummary, Option<i64>)> = state
        .views
        .user_conversations(user, false)
        .await?
        .into_iter()
        .map(|c| {
            // Nothing from before the user joined.
            let cursor = HistoryQuery {
                after: cursors.get(&c.conversation_id).copied(),
                ..HistoryQuery::default()
            };
            let after = crate::history::from_join(cursor, c.joined).after;
            (c, after)
        })
        .filter(|(c, after)| match (c.last_seq.max(c.last_change), after) {
            (None, _) => false,
            (Some(last), Some(after)) => last > *after,
            (Some(_), None) => true,
        })
        .collect();
    let first_pages = futures::stream::iter(todo)
        .map(|(c, after)| {
            // The partition's end at the barrier: the live stream has the rest.
            let p = crate::membership::partition_of(state, &c.conversation_id);
            let before = ends.get(p as usize).copied().unwrap_or(0);
            async move {
                let page = read(state, user, &c.conversation_id, after, before).await;
                (c.conversation_id, before, page)
            }
        })
        .buffered(READ_AHEAD);
    futures::pin_mut!(first_pages);
    let mut done = SyncStats::default();
    while let Some((conversation, before, page)) = first_pages.next().await {
        let mut page = page?;
        done.conversations += 1;
        loop {
            let next_after = page.messages.last().map(|m| m.seq);
            let has_more = page.has_more && next_after.is_some();
            done.messages += page.messages.len();
            let frame = ServerFrame::SyncBatch {
                conversation_id: conversation.clone(),
                messages: page.messages,
                changes: page.changes,
                has_more,
            };
            if !session.push_bulk(encode(&frame)).await {
                return Ok(done);
            }
            if !has_more {
                break;
            }
            page = read(state, user, &conversation, next_after, before).await?;
        }
    }
    session
        .push_bulk(encode(&ServerFrame::Synced { request_id }))
        .await;
    Ok(done)
}

/// A page of `conversation` after `after` and before `before` (the barrier's end of its
/// partition).
async fn read(
    state: &Shared,
    user: &str,
    conversation: &str,
    after: Option<i64>,
    before: i64,
) -> Result<HistoryPage, ApiError> {
    let q = HistoryQuery {
        after: Some(after.unwrap_or(-1)),
        before: Some(before),
        limit: state.config.sync_page.clamp(1, PAGE),
        viewer: Some(user.to_string()),
    };
    Ok(state.views.history(conversation, q).await?)
}
