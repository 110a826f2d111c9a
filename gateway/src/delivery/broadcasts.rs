//! Large groups' records (broadcasts: no recipient list) handed to this gateway's own
//! members of the group, in a task of their own.
//!
//! The reader of the slot ([`crate::deliveries`]) hands each broadcast here and goes on
//! at once, so a small conversation's delivery that follows a broadcast in the slot is
//! queued to its socket without waiting for the group's fan-out. The fan-out itself:
//! - keeps the slot's order: one task applies membership changes, counts receipts and
//!   delivers messages in the order the slot holds them;
//! - pushes to sessions in chunks of [`CHUNK`] members and yields between chunks, so the
//!   writers of small conversations' sessions are not queued behind every writer of a
//!   large group;
//! - takes the broadcasts already waiting (up to [`MAX_BATCH`]) at once, and a run of
//!   consecutive messages of one group is pushed member by member, all the run's frames
//!   for a member together: a member's writer then sends them in one socket write.

use std::sync::Arc;

use parley_schemas::{decode_any, AnyRecord, DeliveryBatch};
use tokio::sync::mpsc;
use tracing::debug;
use uuid::Uuid;

use crate::counts::ReceiptCounter;
use crate::deliveries::frame_of_event;
use crate::echoes::Echoes;
use crate::groups::{Change, GroupIndex};
use crate::membership::MemberCache;
use crate::sessions::{Frame, Sessions};

/// Broadcasts waiting for the fan-out task before the slot's reader waits for room.
const QUEUE: usize = 4096;
/// Most broadcasts taken from the queue at once.
const MAX_BATCH: usize = 32;
/// Members pushed to before the fan-out yields to the sessions' writers.
const CHUNK: usize = 64;

/// The slot reader's handle on the fan-out task.
#[derive(Clone)]
pub struct Broadcasts {
    tx: mpsc::Sender<DeliveryBatch>,
}

/// Whom broadcasts go to.
pub struct Targets {
    pub sessions: Arc<Sessions>,
    pub groups: Arc<GroupIndex>,
    pub counts: Arc<ReceiptCounter>,
    /// Sends waiting for their routed copy.
    pub echoes: Arc<Echoes>,
    /// The membership pre-check's cache: a removal seen here clears its entry.
    pub members: Arc<MemberCache>,
    /// Presence as people see it: a leave or join changes who is shown whom.
    pub contacts: Arc<crate::contacts::Contacts>,
    /// Opens sealed bodies (with a key-encryption key configured).
    pub ring: Option<Arc<parley_keys::TransitRing>>,
}

impl Broadcasts {
    /// Starts the fan-out task; it ends once every handle is dropped and it has drained.
    pub fn spawn(targets: Targets) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (Self { tx }, tokio::spawn(run(rx, targets)))
    }

    /// Queues a broadcast, in slot order; waits while the task is [`QUEUE`] behind.
    /// An error: the fan-out task has ended (a panic), and broadcasts would be lost.
    pub async fn hand(&self, batch: DeliveryBatch) -> anyhow::Result<()> {
        self.tx
            .send(batch)
            .await
            .map_err(|_| anyhow::anyhow!("the broadcast fan-out task has ended"))
    }
}

async fn run(mut rx: mpsc::Receiver<DeliveryBatch>, targets: Targets) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        fan_out(std::mem::take(&mut batch), &targets).await;
    }
}

/// What one broadcast asks of this gateway.
enum Step {
    /// A message or typing indicator to the group's members here (but `skip`).
    Deliver {
        group: String,
        frame: Frame,
        message_id: Option<Uuid>,
        skip: Option<String>,
    },
    /// A membership change, at its position in the slot.
    Change(Change, i32, i64),
    /// A receipt of a group: counted.
    Receipt(String),
    /// Nothing to do here.
    Skip,
}

fn step(batch: &DeliveryBatch, targets: &Targets) -> Step {
    let counts = &targets.counts;
    let event = match decode_any(&batch.event) {
        Ok(e) => e,
        Err(e) => {
            debug!(error = %e, "undecodable broadcast skipped");
            return Step::Skip;
        }
    };
    if let Some(change) = Change::of(&event) {
        if let Change::Leave { conversation, user } = &change {
            // Every gateway gets every group's membership changes, in log order.
            targets.members.forget_member(conversation, user);
        }
        return Step::Change(change, batch.source_partition, batch.source_offset);
    }
    let group = &batch.conversation_id;
    let skip = match &event {
        AnyRecord::ReceiptRecorded(_) => return Step::Receipt(group.clone()),
        AnyRecord::MessagePosted(m) => {
            counts.message(group, batch.source_offset);
            crate::deliveries::observe_latency(m.meta.occurred_at);
            None
        }
        AnyRecord::TypingChanged(t) => Some(t.meta.actor.clone()),
        _ => None,
    };
    let event = crate::deliveries::opened_now(targets.ring.as_deref(), event);
    let Some((frame, message)) = frame_of_event(batch, event) else {
        return Step::Skip;
    };
    targets.echoes.arrived_frame(&frame);
    let Ok(text) = serde_json::to_string(&frame) else {
        return Step::Skip;
    };
    Step::Deliver {
        group: group.clone(),
        frame: text.into(),
        message_id: message.map(|m| m.message_id),
        skip,
    }
}

type Run = Vec<(Frame, Option<Uuid>, Option<String>)>;

/// Fans a batch of broadcasts out in order. Consecutive deliveries to one group form a
/// run, pushed member by member; anything else is done once the run is pushed.
async fn fan_out(batch: Vec<DeliveryBatch>, targets: &Targets) {
    let mut run: Run = Vec::new();
    let mut run_group = String::new();
    for b in &batch {
        let next = step(b, targets);
        let extends = matches!(&next, Step::Deliver { group, .. } if *group == run_group);
        if !run.is_empty() && !extends {
            push_run(&run_group, std::mem::take(&mut run), targets).await;
        }
        match next {
            Step::Deliver {
                group,
                frame,
                message_id,
                skip,
            } => {
                run_group = group;
                run.push((frame, message_id, skip));
            }
            Step::Change(change, partition, offset) => {
                targets.contacts.on_change(&change);
                targets.groups.apply(&change, partition, offset)
            }
            Step::Receipt(group) => targets.counts.receipt(&group),
            Step::Skip => {}
        }
    }
    if !run.is_empty() {
        push_run(&run_group, run, targets).await;
    }
}

/// Pushes a run of one group's frames to its members here, in chunks.
async fn push_run(group: &str, run: Run, targets: &Targets) {
    let members = targets.groups.members_here(group);
    for chunk in members.chunks(CHUNK) {
        for user in chunk {
            for (frame, message_id, skip) in &run {
                if skip.as_deref() != Some(user.as_str()) {
                    targets.sessions.deliver(user, frame, message_id.as_ref());
                }
            }
        }
        if members.len() > CHUNK {
            tokio::task::yield_now().await;
        }
    }
}
