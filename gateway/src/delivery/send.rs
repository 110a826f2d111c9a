//! Sending a message, whatever the transport: check, append, confirm, and answer with
//! the seq history keeps — only after the broker has acknowledged the append.
//!
//! A send is two steps. [`append`] checks the sender and appends `MessagePosted`. A
//! retry (marked so by the client, or an id this gateway has seen lately: [`RecentIds`])
//! is looked up first, and is not appended again if the views already hold it. A first
//! attempt is appended at once: the views are not asked before the append, so the
//! projector is not on the way from a sender to the recipients (a retry the client did
//! not mark is still answered with the original's seq by [`confirm`]; the rules keep the
//! first occurrence).
//!
//! [`confirm`] answers with the seq the log's rules kept, in one of two ways:
//! - the common case, a sender live on this gateway: its message routed back here
//!   ([`crate::echoes`]). A router routes only what the rules kept, so the copy's seq
//!   is the kept one; the projector is not asked at all.
//! - else (no copy within [`ECHO_WAIT`], or a sender not live here): it waits until the
//!   projector has applied the append and asks it which occurrence of the message id
//!   the rules kept: a retry that raced its original to the log is kept at the
//!   original's seq, and a message the rules drop (the sender was removed between the
//!   pre-check and the append) is kept nowhere.
//!
//! So `sent` only ever names a seq that history holds. If neither way confirms in time,
//! the answer is `unavailable`:
//! the message is stored, and sending it again with the same `client_msg_id` returns
//! its seq. A session checks several sends at once ([`check`]), begins their appends
//! one after another in send order (log order = send order: [`begin`] hands the record
//! to the producer before it returns), and waits for them and confirms them
//! concurrently, so a busy sender is not held to one views round trip and one broker
//! round trip per message.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use parley_schemas::frames::ServerFrame;
use parley_schemas::{ids, MessagePosted, Meta};
use uuid::Uuid;

use crate::echoes::EchoWait;
use crate::error::ApiError;
use crate::membership::{ensure_member, partition_of};
use crate::service::Shared;

/// How long the gateway waits for the projector to confirm which occurrence won.
const CONFIRM_WAIT: Duration = Duration::from_secs(10);
/// How long a send waits for its routed copy before asking the views.
const ECHO_WAIT: Duration = Duration::from_secs(2);

/// Message ids remembered by [`RecentIds`].
const RECENT_IDS: usize = 100_000;

/// The message ids of the latest sends through this gateway (bounded).
#[derive(Default)]
pub struct RecentIds {
    inner: Mutex<(HashSet<Uuid>, VecDeque<Uuid>)>,
}

impl RecentIds {
    /// Remembers `id`; whether it was already remembered.
    pub fn seen(&self, id: Uuid) -> bool {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (set, order) = &mut *inner;
        if !set.insert(id) {
            return true;
        }
        order.push_back(id);
        if order.len() > RECENT_IDS {
            if let Some(old) = order.pop_front() {
                set.remove(&old);
            }
        }
        false
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub message_id: Uuid,
    pub seq: i64,
    /// The conversation's previous message, as history (or the router) has it.
    pub prev_seq: Option<i64>,
    /// The router that confirmed it did not know the previous message.
    pub prev_unknown: bool,
    pub ts: i64,
    /// The conversation's change before it (-1: none; `None`: not known).
    pub prev_change: Option<i64>,
}

impl Sent {
    pub fn frame(&self, client_msg_id: &str, conversation_id: &str) -> ServerFrame {
        ServerFrame::Sent {
            client_msg_id: client_msg_id.to_string(),
            message_id: self.message_id,
            conversation_id: conversation_id.to_string(),
            seq: self.seq,
            prev_seq: self.prev_seq,
            prev_unknown: self.prev_unknown,
            ts: self.ts,
            prev_change: self.prev_change,
        }
    }
}

/// A send that passed its checks, ready to append.
#[derive(Debug)]
pub struct Checked {
    pub record: MessagePosted,
    /// A retry (marked, or an id seen lately): confirmed by the views, whose dedup
    /// index is exact, not by its routed copy (a router remembers a bounded window).
    pub careful: bool,
}

/// What [`append`] did.
#[derive(Debug)]
pub enum Appended {
    /// The views already hold the message (a retry): nothing was appended.
    Known(Sent),
    /// Appended at `offset` of the conversation's partition; not confirmed yet.
    At {
        conversation: String,
        message_id: Uuid,
        partition: i32,
        offset: i64,
        /// Its routed copy, when the sender is live here.
        echo: Option<EchoWait>,
    },
}

pub fn validate(state: &Shared, client_msg_id: &str, body: &str) -> Result<(), ApiError> {
    validate_id(client_msg_id)?;
    validate_body(state, body)
}

fn validate_id(client_msg_id: &str) -> Result<(), ApiError> {
    if client_msg_id.is_empty() || client_msg_id.len() > 128 {
        return Err(ApiError::bad_request(
            "client_msg_id must be 1 to 128 characters",
        ));
    }
    Ok(())
}

/// A body is not empty, and not longer than the gateway's limit.
pub fn validate_body(state: &Shared, body: &str) -> Result<(), ApiError> {
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

/// Sends `body` from `sender` to `conversation`: [`append`], then [`confirm`].
pub async fn send(
    state: &Shared,
    sender: &str,
    conversation: &str,
    draft: Draft,
) -> Result<Sent, ApiError> {
    let appended = append(state, sender, conversation, draft).await?;
    confirm(state, appended).await
}

/// A message as its sender wrote it, before any check.
#[derive(Clone, Debug, Default)]
pub struct Draft {
    pub client_msg_id: String,
    pub body: String,
    /// This `client_msg_id` was sent before (a retry): looked up before appending.
    pub retry: bool,
    /// The seq of the message of the same conversation it replies to.
    pub reply_to: Option<i64>,
    /// Uploads to send with it.
    pub attachments: Vec<parley_schemas::frames::Attach>,
}

/// A send whose append is under way ([`begin`]).
pub enum Started {
    /// The views already hold the message (a retry): nothing was appended.
    Known(Sent),
    Appending {
        conversation: String,
        message_id: Uuid,
        partition: i32,
        appending: parley_sequencer::log::Appending,
        echo: Option<EchoWait>,
    },
}

/// Starts the append of a checked send ([`check`]). Returns at once unless the producer's
/// queue is full (then it waits for the append, so that order holds).
pub async fn begin(
    state: &Shared,
    conversation: &str,
    checked: Result<Checked, Sent>,
) -> Result<Started, ApiError> {
    let (mut record, careful) = match checked {
        Ok(c) => (c.record, c.careful),
        Err(sent) => return Ok(Started::Known(sent)),
    };
    let message_id = record.message_id;
    let data_key =
        match &state.sealer {
            Some(sealer) => Some(sealer.seal(&mut record).await.map_err(|e| {
                ApiError::unavailable(format!("the message could not be sealed: {e}"))
            })?),
            None => None,
        };
    // Before the append: the copy may come back before the acknowledgement does.
    let echo = (!careful && state.presence.is_live(&record.meta.actor))
        .then(|| state.echoes.expect(message_id));
    let value = parley_schemas::AnyRecord::from(record)
        .encode()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let topic = &state.config.topics.events;
    let key = conversation.as_bytes();
    let appending = match state.log.start_append(topic, None, key, Some(&value)) {
        Some(a) => a,
        None => {
            let pos = state.log.append(topic, key, Some(&value)).await;
            Box::pin(std::future::ready(pos))
        }
    };
    // A sealed message's data key is appended beside it; the send is answered only
    // once both are in the log.
    let appending = match (data_key, &state.sealer) {
        (Some(k), Some(sealer)) => {
            let sealer = sealer.clone();
            Box::pin(async move {
                let (key, message) = futures::join!(sealer.append(&k), appending);
                key?;
                message
            })
        }
        _ => appending,
    };
    Ok(Started::Appending {
        conversation: conversation.to_string(),
        message_id,
        partition: partition_of(state, conversation),
        appending,
        echo,
    })
}

/// Waits for a started append to be acknowledged by the log.
pub async fn appended(started: Started) -> Result<Appended, ApiError> {
    match started {
        Started::Known(sent) => Ok(Appended::Known(sent)),
        Started::Appending {
            conversation,
            message_id,
            partition,
            appending,
            echo,
        } => Ok(Appended::At {
            conversation,
            message_id,
            partition,
            offset: appending.await?.offset,
            echo,
        }),
    }
}

/// The checks before an append: the record to append, or the message as the views
/// already hold it (looked up only for a `retry`, or an id this gateway has seen
/// lately). Checks of one session's sends may run concurrently; their appends are begun
/// in send order ([`begin`]).
pub async fn check(
    state: &Shared,
    sender: &str,
    conversation: &str,
    draft: Draft,
) -> Result<Result<Checked, Sent>, ApiError> {
    let Draft {
        client_msg_id,
        body,
        retry,
        reply_to,
        attachments,
    } = draft;
    // A message of files alone may have no text.
    match attachments.is_empty() || !body.is_empty() {
        true => validate(state, &client_msg_id, &body)?,
        false => validate_id(&client_msg_id)?,
    }
    if reply_to.is_some_and(|r| r < 0) {
        return Err(ApiError::bad_request("reply_to must be a seq, 0 or more"));
    }
    state.limits.check(crate::limits::Limit::Send, sender)?;
    ensure_member(state, conversation, sender).await?;
    let message_id = ids::message_id(sender, &client_msg_id);
    let careful = state.recent.seen(message_id) || retry;
    let known = match careful {
        true => state.views.message_by_id(conversation, message_id).await?,
        false => None,
    };
    if let Some(m) = known {
        return Ok(Err(Sent {
            message_id,
            seq: m.seq,
            prev_seq: m.prev_seq,
            prev_unknown: false,
            ts: m.ts,
            prev_change: m.prev_change,
        }));
    }
    // Each upload is claimed for this message before it reaches the log.
    let attachments = match attachments.is_empty() {
        true => Vec::new(),
        false => {
            let blobs = crate::attachments::store_of(state)?;
            crate::attachments::slots::claim(blobs, sender, conversation, message_id, &attachments)
                .await?
        }
    };
    Ok(Ok(Checked {
        record: MessagePosted {
            meta: Meta::new(sender),
            conversation_id: conversation.to_string(),
            message_id,
            client_msg_id,
            body,
            reply_to,
            attachments,
            sealed: None,
        },
        careful,
    }))
}

/// Checks the sender and appends the message, unless the views already hold it: the
/// steps of a session's sends ([`check`], [`begin`], [`appended`]) one after another.
pub async fn append(
    state: &Shared,
    sender: &str,
    conversation: &str,
    draft: Draft,
) -> Result<Appended, ApiError> {
    let checked = check(state, sender, conversation, draft).await?;
    appended(begin(state, conversation, checked).await?).await
}

/// The seq history keeps for an appended message: from its routed copy, or else from
/// the views once the projector has applied the append.
pub async fn confirm(state: &Shared, appended: Appended) -> Result<Sent, ApiError> {
    let (conversation, message_id, partition, offset, echo) = match appended {
        Appended::Known(sent) => return Ok(sent),
        Appended::At {
            conversation,
            message_id,
            partition,
            offset,
            echo,
        } => (conversation, message_id, partition, offset, echo),
    };
    let span = tracing::debug_span!("send", conversation_id = %conversation, message_id = %message_id, seq = offset);
    tracing::debug!(parent: &span, "appended");
    if let Some(echo) = echo {
        // The kept occurrence: this append, or an earlier one of the same id (a later one
        // would have been dropped). A wait that ends without it takes its entry out.
        if let Some(e) = echo.within(ECHO_WAIT).await.filter(|e| e.seq <= offset) {
            return Ok(Sent {
                message_id,
                seq: e.seq,
                prev_seq: e.prev_seq,
                prev_unknown: e.prev_unknown,
                ts: e.ts,
                prev_change: e.prev_change,
            });
        }
    }
    let applied = state
        .views
        .wait_applied(&[(partition, offset + 1)], CONFIRM_WAIT)
        .await
        .unwrap_or(false);
    if !applied {
        return Err(ApiError::unavailable(
            "the message is stored but its seq is not confirmed yet: \
             send it again with the same client_msg_id",
        ));
    }
    match state.views.message_by_id(&conversation, message_id).await? {
        Some(kept) => Ok(Sent {
            message_id,
            seq: kept.seq,
            prev_seq: kept.prev_seq,
            prev_unknown: false,
            ts: kept.ts,
            prev_change: kept.prev_change,
        }),
        None => {
            // The rules refused it at its position: the sender was no longer a member.
            state.members.forget(&conversation);
            Err(ApiError::not_member(&conversation))
        }
    }
}
