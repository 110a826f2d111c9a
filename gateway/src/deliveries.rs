//! This gateway's slot of `deliveries`, read from its end: routed messages go to the
//! sessions of their recipients; presence acknowledgements go to the presence agent.
//! Anything older than the start is recovered by clients' cursor sync, never replayed
//! to sockets here.

use std::sync::Arc;

use futures::StreamExt;
use parley_schemas::frames::{MessageView, ServerFrame};
use parley_schemas::{decode, decode_any, AnyRecord, MessagePosted};
use parley_sequencer::{EventLog, StartAt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

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
                let message = match decode::<MessagePosted>(&batch.event) {
                    Ok(m) => m,
                    Err(e) => {
                        debug!(error = %e, "delivery of a record kind this gateway does not show");
                        continue;
                    }
                };
                let frame = ServerFrame::Message(MessageView {
                    conversation_id: batch.conversation_id.clone(),
                    seq: batch.source_offset,
                    prev_seq: batch.prev_seq,
                    message_id: message.message_id,
                    sender_id: message.meta.actor.clone(),
                    body: message.body,
                    ts: message.meta.occurred_at,
                });
                let Ok(text) = serde_json::to_string(&frame) else {
                    continue;
                };
                let frame: Frame = text.into();
                for user in &batch.recipients {
                    sessions.deliver(user, &frame, Some(&message.message_id));
                }
            }
            Ok(AnyRecord::PresenceAcked(ack)) => presence.on_ack(&ack),
            Ok(other) => debug!(schema = other.schema_name(), "ignored on deliveries"),
            Err(e) => warn!(offset = record.offset, error = %e, "undecodable delivery skipped"),
        }
    }
}
