//! This gateway's slot of `deliveries`, read from its end: routed messages, receipts
//! and typing indicators go to the sessions of their recipients; presence acknowledgements go to the presence agent.
//! Anything older than the start is recovered by clients' cursor sync, never replayed
//! to sockets here.

use std::sync::Arc;

use futures::StreamExt;
use parley_schemas::frames::{MessageView, ServerFrame};
use parley_schemas::{decode_any, AnyRecord, DeliveryBatch};
use parley_sequencer::{EventLog, StartAt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};
use uuid::Uuid;

use crate::presence::PresenceAgent;
use crate::sessions::{Frame, Sessions};

/// Follows the slot until `shutdown`; an error ends it (and the gateway with it).
pub async fn follow(
    log: Arc<dyn EventLog>,
    topic: String,
    slot: i32,
    sessions: Arc<Sessions>,
    presence: Arc<PresenceAgent>,
    started: tokio::sync::oneshot::Sender<()>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut stream = log.read(&topic, &[(slot, StartAt::End)]).await?;
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
            Ok(AnyRecord::DeliveryBatch(batch)) => {
                let Some((frame, message_id)) = frame_of(&batch) else {
                    continue;
                };
                let Ok(text) = serde_json::to_string(&frame) else {
                    continue;
                };
                let frame: Frame = text.into();
                for user in &batch.recipients {
                    sessions.deliver(user, &frame, message_id.as_ref());
                }
            }
            Ok(AnyRecord::PresenceAcked(ack)) => presence.on_ack(&ack),
            Ok(other) => debug!(schema = other.schema_name(), "ignored on deliveries"),
            Err(e) => warn!(offset = record.offset, error = %e, "undecodable delivery skipped"),
        }
    }
}

/// The frame a routed record becomes, and the message id (for own-echo suppression).
fn frame_of(batch: &DeliveryBatch) -> Option<(ServerFrame, Option<Uuid>)> {
    match decode_any(&batch.event) {
        Ok(AnyRecord::MessagePosted(m)) => {
            let id = m.message_id;
            let frame = ServerFrame::Message(MessageView {
                conversation_id: batch.conversation_id.clone(),
                seq: batch.source_offset,
                prev_seq: batch.prev_seq,
                message_id: m.message_id,
                sender_id: m.meta.actor,
                body: m.body,
                ts: m.meta.occurred_at,
            });
            Some((frame, Some(id)))
        }
        Ok(AnyRecord::ReceiptRecorded(r)) => Some((
            ServerFrame::Receipt {
                conversation_id: r.conversation_id,
                user_id: r.meta.actor,
                kind: r.kind,
                seq: r.up_to_seq,
            },
            None,
        )),
        Ok(AnyRecord::TypingChanged(t)) => Some((
            ServerFrame::Typing {
                conversation_id: t.conversation_id,
                user_id: t.meta.actor,
                active: t.active,
                expires_at: t.expires_at,
            },
            None,
        )),
        Ok(other) => {
            debug!(
                schema = other.schema_name(),
                "delivery of a record kind this gateway does not show"
            );
            None
        }
        Err(e) => {
            debug!(error = %e, "undecodable routed record skipped");
            None
        }
    }
}
