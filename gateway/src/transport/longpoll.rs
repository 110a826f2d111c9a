//! The long-polling fallback, for clients that cannot hold a WebSocket:
//! `POST /v1/conversations/{id}/messages` sends, `GET /v1/events` receives.
//!
//! `GET /v1/events?cursor=…&timeout_ms=…&limit=…` answers with the same `message`
//! frames a WebSocket gets, and a cursor to continue from. The cursor holds the whole
//! state, so any gateway can serve any poll: it is the next offset to read in each
//! partition of `events` (a message's seq is its offset there, so "every message of the
//! user's conversations in partition p from offset n on" is exact). A poll reads the
//! views behind the read-your-log barrier; when they have nothing new it waits, up to
//! `timeout_ms`, for a delivery to the user to reach this gateway (the poll makes the
//! user present here), and looks again.
//!
//! Messages of a conversation are ordered by seq; a conversation the user joins is
//! followed from the cursor on (older messages are in its history).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::Json;
use base64::Engine;
use parley_projector::views::HistoryQuery;
use parley_schemas::frames::ServerFrame;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::membership::partition_of;
use crate::send::{send, Draft};
use crate::service::Shared;
use crate::sync::barrier;

/// Default and longest wait of a poll.
const DEFAULT_TIMEOUT_MS: u64 = 25_000;
const MAX_TIMEOUT_MS: u64 = 60_000;
/// Default and largest number of messages per poll.
const DEFAULT_LIMIT: u32 = 500;
const MAX_LIMIT: u32 = 1000;
/// How often a waiting poll looks again even without a delivery (a backstop for a
/// presence not acknowledged yet).
const RECHECK: Duration = Duration::from_secs(1);
/// Deliveries queued for a waiting poll (only a wake-up signal).
const WAKE_QUEUE: usize = 64;

/// Where a long-poll client stands: the next offset to read, per partition of `events`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    v: u8,
    next: Vec<i64>,
}

impl Cursor {
    /// From the beginning of every partition.
    pub fn start(partitions: i32) -> Cursor {
        Cursor {
            v: 1,
            next: vec![0; partitions.max(0) as usize],
        }
    }

    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    pub fn decode(s: &str, partitions: i32) -> Result<Cursor, ApiError> {
        let bad = |why: &str| ApiError::bad_request(format!("malformed cursor: {why}"));
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| bad("not base64url"))?;
        let c: Cursor = serde_json::from_slice(&bytes).map_err(|_| bad("not a cursor"))?;
        if c.v != 1 {
            return Err(bad("unknown version"));
        }
        if c.next.len() != partitions as usize {
            return Err(bad("it is from a deployment with another partition count"));
        }
        if c.next.iter().any(|o| *o < 0) {
            return Err(bad("negative offset"));
        }
        Ok(c)
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PollParams {
    cursor: Option<String>,
    timeout_ms: Option<u64>,
    limit: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PollReply {
    pub frames: Vec<ServerFrame>,
    /// Pass it to the next poll.
    pub cursor: String,
    /// More is ready: poll again at once.
    pub has_more: bool,
}

/// `GET /v1/events`
pub async fn poll(
    State(state): State<Shared>,
    Caller(me): Caller,
    params: Result<Query<PollParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<PollReply>, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    state
        .limits
        .check(crate::limits::Limit::Read(crate::limits::Read::Poll), &me)?;
    let mut cursor = match &p.cursor {
        Some(c) => Cursor::decode(c, state.events_partitions)?,
        None => Cursor::start(state.events_partitions),
    };
    let timeout = Duration::from_millis(
        p.timeout_ms
            .unwrap_or(DEFAULT_TIMEOUT_MS)
            .min(MAX_TIMEOUT_MS),
    );
    let limit = p.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let deadline = Instant::now() + timeout;

    // Present here while polling (and a while after): deliveries to the user come to
    // this gateway and wake the poll, and no inbox entries pile up for an online user.
    let (session, mut wake) = state.sessions.open(&me, WAKE_QUEUE);
    // Large groups' messages wake the poll too (without the index, the recheck does).
    let views = state.views.clone();
    let user = me.clone();
    // Held until the poll ends (or its future is dropped).
    let _attachment = state
        .groups
        .attach(&me, |seen| async move {
            crate::groups::load(&*views, &user, &seen).await
        })
        .await
        .ok();
    state.presence.session_opened(&me).await;
    let result = async {
        loop {
            let (frames, has_more) = collect(&state, &me, &mut cursor, limit).await?;
            if !frames.is_empty() || Instant::now() >= deadline {
                return Ok::<_, ApiError>((frames, has_more));
            }
            let recheck = deadline.min(Instant::now() + RECHECK);
            tokio::select! {
                _ = wake.live.recv() => {}
                _ = tokio::time::sleep_until(recheck) => {}
                _ = state.shutdown.cancelled() => return Ok((frames, false)),
            }
            while wake.live.try_recv().is_ok() {}
        }
    }
    .await;
    state.sessions.close(&session);
    let linger = state.config.poll_linger;
    let (agent, user) = (state.presence.clone(), me.clone());
    tokio::spawn(async move {
        tokio::time::sleep(linger).await;
        agent.session_closed(&user).await;
    });
    let (frames, has_more) = result?;
    Ok(Json(PollReply {
        frames: frames.into_iter().map(|(_, f)| f).collect(),
        cursor: cursor.encode(),
        has_more,
    }))
}

/// The next messages and changes to messages after `cursor` (at most `limit`, each
/// with its seq) of `user`'s conversations, read behind the barrier; advances `cursor`
/// past what they cover.
async fn collect(
    state: &Shared,
    user: &str,
    cursor: &mut Cursor,
    limit: u32,
) -> Result<(Vec<(i64, ServerFrame)>, bool), ApiError> {
    let ends = barrier(state).await?;
    // Each conversation with the offset the user joined it at: nothing before it.
    let mut by_partition: BTreeMap<i32, Vec<(String, Option<i64>)>> = BTreeMap::new();
    for c in state.views.user_conversations(user, false).await? {
        let p = partition_of(state, &c.conversation_id);
        let from = cursor.next.get(p as usize).copied().unwrap_or(0);
        if c.last_seq
            .max(c.last_change)
            .is_some_and(|last| last >= from)
        {
            by_partition
                .entry(p)
                .or_default()
                .push((c.conversation_id, c.joined));
        }
    }
    let mut out = Vec::new();
    let mut has_more = false;
    for (p, next) in cursor.next.iter_mut().enumerate() {
        let end = ends.get(p).copied().unwrap_or(0);
        let Some(conversations) = by_partition.get(&(p as i32)) else {
            *next = (*next).max(end);
            continue;
        };
        let room = limit as usize - out.len();
        if room == 0 {
            has_more = true;
            break;
        }
        let q = HistoryQuery {
            after: Some(*next - 1),
            before: Some(end),
            limit: room as u32,
            viewer: Some(user.to_string()),
        };
        let mut found: Vec<(i64, ServerFrame)> = Vec::new();
        let mut capped = false;
        for (c, joined) in conversations {
            let q = crate::history::from_join(q.clone(), *joined);
            let page = state.views.history(c, q).await?;
            capped |= page.has_more;
            found.extend(
                page.messages
                    .into_iter()
                    .map(|m| (m.seq, ServerFrame::Message(m))),
            );
            // A page's changes end at its last message when it has more: in seq order
            // with the messages, a cut below keeps a prefix of both.
            found.extend(page.changes.into_iter().map(|c| (c.seq(), c.into_frame())));
        }
        found.sort_by_key(|(seq, _)| *seq);
        if found.len() > room {
            found.truncate(room);
            capped = true;
        }
        if capped {
            has_more = true;
            *next = found.last().map_or(*next, |(seq, _)| seq + 1);
        } else {
            *next = (*next).max(end);
        }
        out.extend(found);
    }
    Ok((out, has_more))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendBody {
    client_msg_id: String,
    body: String,
    /// This `client_msg_id` was sent before: looked up before appending.
    #[serde(default)]
    retry: bool,
    /// The seq of the message of this conversation it replies to.
    #[serde(default)]
    #[schema(minimum = 0)]
    reply_to: Option<i64>,
    /// Uploads to send with it (`POST /v1/uploads`), each used once.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    attachments: Vec<parley_schemas::frames::Attach>,
}

/// `POST /v1/conversations/{id}/messages`: answers with the `sent` frame.
pub async fn post_message(
    State(state): State<Shared>,
    Caller(me): Caller,
    Path(id): Path<String>,
    body: Result<Json<SendBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<ServerFrame>, ApiError> {
    let Json(b) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let client_msg_id = b.client_msg_id.clone();
    let draft = Draft {
        client_msg_id: b.client_msg_id,
        body: b.body,
        retry: b.retry,
        reply_to: b.reply_to,
        attachments: b.attachments,
    };
    let sent = send(&state, &me, &id, draft).await?;
    Ok(Json(sent.frame(&client_msg_id, &id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_bad_ones_are_refused() {
        let c = Cursor {
            v: 1,
            next: vec![0, 7, 12, 3],
        };
        assert_eq!(Cursor::decode(&c.encode(), 4).unwrap(), c);
        assert!(Cursor::decode(&c.encode(), 8).is_err());
        assert!(Cursor::decode("!!!", 4).is_err());
        assert!(Cursor::decode("e30", 4).is_err());
        let neg = Cursor {
            v: 1,
            next: vec![0, -1, 0, 0],
        };
        assert!(Cursor::decode(&neg.encode(), 4).is_err());
    }
}
