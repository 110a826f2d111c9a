//! This gateway's slot of `deliveries`, read from its end: routed messages, receipts
//! and typing indicators go to the sessions of their recipients; presence acknowledgements go to the presence agent.
//! Anything older than the start is recovered by clients' cursor sync, never replayed
//! to sockets here.
//!
//! A message routed here for a user with no session here (a presence record that
//! outlived the session, say) does not vanish: the gateway writes the user's inbox entry
//! and push job itself, as a router does for anyone offline.
//!
//! A broadcast (a large group's record, with no recipient list) is handed to
//! [`Broadcasts`], which fans it out to this gateway's own members of the group in a
//! task of its own: a membership change updates the index, a message goes to those
//! members' sessions (offline members catch up by sync, not by inbox), a receipt is
//! counted, and a typing indicator goes to the members here but the typist.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::StreamExt;
use parley_schemas::frames::{MessageView, ReplyTo, ServerFrame};
use parley_schemas::{
    decode_any, encode, AnyRecord, DeliveryBatch, InboxEntry, MessagePosted, PushJob,
};
use parley_sequencer::{EventLog, StartAt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

use crate::broadcasts::Broadcasts;
use crate::echoes::Echoes;
use crate::presence::PresenceAgent;
use crate::sessions::{Frame, Sessions};

/// Whom this gateway's deliveries go to.
#[derive(Clone)]
pub struct Local {
    pub sessions: Arc<Sessions>,
    pub broadcasts: Broadcasts,
    pub presence: Arc<PresenceAgent>,
    /// Sends waiting for their routed copy.
    pub echoes: Arc<Echoes>,
    /// Presence frames: a message of a direct conversation shows its writer, a message
    /// of a conversation new to its recipient looks that one up.
    pub contacts: Arc<crate::contacts::Contacts>,
    /// Opens sealed bodies (with a key-encryption key configured).
    pub ring: Option<Arc<parley_keys::TransitRing>>,
}

/// Follows the slot until `shutdown`; an error ends it (and the gateway with it).
pub async fn follow(
    log: Arc<dyn EventLog>,
    topics: parley_sequencer::TopicNames,
    slot: i32,
    local: Local,
    started: tokio::sync::oneshot::Sender<()>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let Local {
        sessions,
        broadcasts,
        presence,
        echoes,
        contacts,
        ring,
    } = local;
    let mut stream = log
        .read(&topics.deliveries, &[(slot, StartAt::End)])
        .await?;
    let actor = format!("gateway:{slot}");
    let _ = started.send(());
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            n = stream.next() => n,
        };
        let record = match next {
            Some(Ok(r)) => r,
            Some(Err(e)) => {
                error!(error = %e, "deliveries stream failed");
                return Err(e.into());
            }
            None => return Ok(()),
        };
        let Some(value) = record.value.as_deref() else {
            continue;
        };
        match decode_any(value) {
            Ok(AnyRecord::DeliveryBatch(batch)) if batch.broadcast => {
                if let Err(e) = broadcasts.hand(batch).await {
                    error!(error = %e, "large groups' broadcasts cannot be delivered");
                    return Err(e);
                }
            }
            Ok(AnyRecord::DeliveryBatch(batch)) => {
                let event = match decode_any(&batch.event) {
                    Ok(e) => e,
                    Err(e) => {
                        debug!(error = %e, "undecodable routed record skipped");
                        continue;
                    }
                };
                // A direct conversation's membership change, routed to its pair's
                // gateways: who is shown whose presence changes at its position.
                if let Some(change) = crate::groups::Change::of(&event) {
                    contacts.on_change(&change);
                    continue;
                }
                let event = opened(ring.as_deref(), event).await;
                let Some((frame, message)) = frame_of_event(&batch, event) else {
                    continue;
                };
                echoes.arrived_frame(&frame);
                let Ok(text) = serde_json::to_string(&frame) else {
                    continue;
                };
                let frame: Frame = text.into();
                let message_id = message.as_ref().map(|m| m.message_id);
                let _span = message.as_ref().map(|m| {
                    tracing::debug_span!(
                        "deliver",
                        conversation_id = %batch.conversation_id,
                        message_id = %m.message_id,
                        seq = batch.source_offset
                    )
                    .entered()
                });
                if let Some(m) = message.as_ref() {
                    observe_latency(m.meta.occurred_at);
                }
                for user in &batch.recipients {
                    sessions.deliver(user, &frame, message_id.as_ref());
                    if let Some(m) = message.as_ref() {
                        contacts.on_message(user, &batch.conversation_id, m.sender());
                    }
                    if let Some(m) = message.as_ref() {
                        if !sessions.has_user(user) && !presence.holds(user) {
                            let seq = batch.source_offset;
                            tokio::spawn(to_inbox(
                                log.clone(),
                                topics.clone(),
                                actor.clone(),
                                user.clone(),
                                seq,
                                m.clone(),
                            ));
                        }
                    }
                }
            }
            Ok(AnyRecord::PresenceAcked(ack)) => presence.on_ack(&ack),
            Ok(other) => debug!(schema = other.schema_name(), "ignored on deliveries"),
            Err(e) => warn!(offset = record.offset, error = %e, "undecodable delivery skipped"),
        }
    }
}

/// Records the time from a message's append (`occurred_at`, ms since the epoch) to now,
/// when its recipients' sessions here get it.
pub(crate) fn observe_latency(occurred_at: i64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let ms = (now - occurred_at).max(0);
    static DELIVER: OnceLock<metrics::Histogram> = OnceLock::new();
    parley_ops::metrics::kept(&DELIVER, || {
        metrics::histogram!(parley_ops::metrics::DELIVER_SECONDS)
    })
    .record(ms as f64 / 1000.0);
}

/// Writes the inbox entry and push job of a message routed to a user who has no
/// session here.
async fn to_inbox(
    log: Arc<dyn EventLog>,
    topics: parley_sequencer::TopicNames,
    actor: String,
    user: String,
    seq: i64,
    m: MessagePosted,
) {
    let entry = InboxEntry::for_message(&actor, &user, seq, &m);
    let job = PushJob::for_message(&actor, &user, seq, &m);
    let (Ok(entry), Ok(job)) = (encode(&entry), encode(&job)) else {
        return;
    };
    debug!(user = %user, seq, "routed here with no session here: to the inbox");
    metrics::counter!(parley_ops::metrics::INBOX_WRITTEN).increment(1);
    for (topic, value) in [(&topics.inbox, entry), (&topics.push, job)] {
        // Retried a few times: the user's sync finds the message in any case.
        for attempt in 0..5u32 {
            match log.append(topic, user.as_bytes(), Some(&value)).await {
                Ok(_) => break,
                Err(e) if attempt < 4 && e.is_retryable() => {
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await
                }
                Err(e) => {
                    warn!(user = %user, topic = %topic, error = %e, "inbox entry not written");
                    break;
                }
            }
        }
    }
}

/// How long a routed message waits for the transit key it is sealed under (made an
/// hour ahead, so only a gateway's very first one can be missing for a moment).
const TRANSIT_WAIT: Duration = Duration::from_secs(2);

/// `event` with a sealed message's body opened (through its transit key) for its
/// recipients; `sealed` stays, so inbox and push copies carry no text.
pub(crate) async fn opened(
    ring: Option<&parley_keys::TransitRing>,
    mut event: AnyRecord,
) -> AnyRecord {
    let Some(ring) = ring else { return event };
    let open = match &mut event {
        AnyRecord::MessagePosted(m) => ring.open(m, TRANSIT_WAIT).await,
        AnyRecord::MessageEdited(e) => ring.open(e, TRANSIT_WAIT).await,
        _ => true,
    };
    if !open {
        not_opened(&event);
    }
    event
}

/// [`opened`] without waiting for a missing transit key.
pub(crate) fn opened_now(
    ring: Option<&parley_keys::TransitRing>,
    mut event: AnyRecord,
) -> AnyRecord {
    let Some(ring) = ring else { return event };
    let open = match &mut event {
        AnyRecord::MessagePosted(m) => ring.open_now(m),
        AnyRecord::MessageEdited(e) => ring.open_now(e),
        _ => true,
    };
    if !open {
        not_opened(&event);
    }
    event
}

fn not_opened(event: &AnyRecord) {
    let conversation = match event {
        AnyRecord::MessagePosted(m) => m.conversation_id.as_str(),
        AnyRecord::MessageEdited(e) => e.conversation_id.as_str(),
        _ => "",
    };
    metrics::counter!(parley_ops::metrics::SEALED_NOT_OPENED).increment(1);
    warn!(
        conversation_id = %conversation,
        "a sealed message whose transit key is not known here: delivered without its text \
         (history has it)"
    );
}

/// The frame a routed record becomes, and the message it carries if it is one.
pub(crate) fn frame_of_event(
    batch: &DeliveryBatch,
    event: AnyRecord,
) -> Option<(ServerFrame, Option<MessagePosted>)> {
    match event {
        AnyRecord::MessagePosted(m) => {
            let frame = ServerFrame::Message(MessageView {
                conversation_id: batch.conversation_id.clone(),
                seq: batch.source_offset,
                // -1: the first message; null: the router did not know.
                prev_seq: batch.prev_seq.filter(|p| *p >= 0),
                prev_unknown: batch.prev_seq.is_none(),
                message_id: m.message_id,
                sender_id: m.meta.actor.clone(),
                body: m.body.clone(),
                ts: m.meta.occurred_at,
                reply_to: m.reply_to.map(|seq| ReplyTo {
                    seq,
                    ..Default::default()
                }),
                // -1: no change before it; null: the router did not know.
                prev_change: batch.prev_change,
                attachments: m.attachments.clone(),
                ..Default::default()
            });
            Some((frame, Some(m)))
        }
        AnyRecord::MessageEdited(e) => Some((
            ServerFrame::MessageEdited {
                conversation_id: e.conversation_id,
                seq: batch.source_offset,
                target_seq: e.target_seq,
                sender_id: e.meta.actor,
                body: e.body,
                edited_at: e.meta.occurred_at,
                prev_change: batch.prev_change,
            },
            None,
        )),
        AnyRecord::MessageDeleted(d) => Some((
            ServerFrame::MessageDeleted {
                conversation_id: d.conversation_id,
                seq: batch.source_offset,
                target_seq: d.target_seq,
                actor: d.meta.actor,
                prev_change: batch.prev_change,
            },
            None,
        )),
        AnyRecord::ReactionSet(r) => Some((
            ServerFrame::Reaction {
                conversation_id: r.conversation_id,
                seq: batch.source_offset,
                target_seq: r.target_seq,
                user_id: r.meta.actor,
                emoji: r.emoji,
                on: r.on,
                prev_change: batch.prev_change,
            },
            None,
        )),
        AnyRecord::ReceiptRecorded(r) => Some((
            ServerFrame::Receipt {
                conversation_id: r.conversation_id,
                user_id: r.meta.actor,
                kind: r.kind,
                seq: r.up_to_seq,
            },
            None,
        )),
        AnyRecord::TypingChanged(t) => Some((
            ServerFrame::Typing {
                conversation_id: t.conversation_id,
                user_id: t.meta.actor,
                active: t.active,
                expires_at: t.expires_at,
            },
            None,
        )),
        other => {
            debug!(
                schema = other.schema_name(),
                "delivery of a record kind this gateway does not show"
            );
            None
        }
    }
}
