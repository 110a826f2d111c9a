//! The routing state every task of a worker shares, behind one lock: the presence view
//! and, per owned partition, its state and the next offset to route.
//!
//! Routing a record and acknowledging a presence record both take the lock, so when a
//! worker acknowledges "user U is online at gateway G from offset N of partition P",
//! every record of P at or after N is routed with U online.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use parley_schemas::{
    decode_any, now_millis, AnyRecord, DeliveryBatch, InboxEntry, Meta, PresenceAcked, PushJob,
};
use parley_sequencer::LogRecord;
use tracing::warn;

use crate::presence::{AckRequest, PresenceView};
use crate::state::{PartitionState, Posted, Prev, Recipients, Routed};

/// A record to append, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// To the deliveries partition of a gateway slot.
    Delivery {
        slot: i32,
        key: String,
        value: Vec<u8>,
    },
    Inbox {
        user: String,
        value: Vec<u8>,
    },
    Push {
        user: String,
        value: Vec<u8>,
    },
}

pub(crate) struct Part {
    /// `None` while the partition is being taken over.
    pub(crate) state: Option<PartitionState>,
    /// The next offset to route.
    next: i64,
}

#[derive(Default)]
pub(crate) struct Inner {
    pub(crate) presence: PresenceView,
    pub(crate) parts: HashMap<i32, Part>,
}

pub struct Router {
    inner: Mutex<Inner>,
    pub(crate) actor: String,
    /// Typing indicators of large groups, throttled.
    pub(crate) typing: crate::signals::TypingGate,
    /// Push settings: who opted in to every message of a large group.
    opt_ins: std::sync::OnceLock<Arc<parley_push::DeviceBook>>,
}

impl Router {
    pub fn new(worker_id: &str, typing_per_s: u32) -> Self {
        Router {
            inner: Mutex::new(Inner::default()),
            actor: format!("fanout:{worker_id}"),
            typing: crate::signals::TypingGate::new(typing_per_s),
            opt_ins: std::sync::OnceLock::new(),
        }
    }

    /// Large groups then push every message to the offline members who opted in.
    pub fn set_opt_ins(&self, book: Arc<parley_push::DeviceBook>) {
        let _ = self.opt_ins.set(book);
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A partition is ours from `start` on; it routes nothing until [`Router::ready`].
    pub fn assign(&self, partition: i32, start: i64) {
        self.lock().parts.insert(
            partition,
            Part {
                state: None,
                next: start,
            },
        );
    }

    /// The partition's state is built: route from here.
    pub fn ready(&self, partition: i32, state: PartitionState) {
        if let Some(part) = self.lock().parts.get_mut(&partition) {
            part.state = Some(state);
        }
    }

    /// The partitions this worker owns, in order.
    pub fn owned(&self) -> Vec<i32> {
        let mut owned: Vec<i32> = self.lock().parts.keys().copied().collect();
        owned.sort_unstable();
        owned
    }

    pub fn revoke(&self, partitions: &[i32]) {
        let mut inner = self.lock();
        for p in partitions {
            inner.parts.remove(p);
        }
    }

    /// Applies a presence record; for one that asks, the acknowledgement to send.
    pub fn apply_presence(&self, record: &LogRecord) -> Option<(i32, PresenceAcked)> {
        let mut inner = self.lock();
        let request = inner.presence.apply(record, now_millis())?;
        Some(self.ack(&inner, request))
    }

    /// Acknowledgements, with the partitions owned now, of every open request: sent
    /// after taking partitions over, so that a session that connected while this worker
    /// owned nothing still becomes live.
    pub fn acknowledge_open_requests(&self) -> Vec<(i32, PresenceAcked)> {
        let inner = self.lock();
        inner
            .presence
            .open_requests(now_millis())
            .into_iter()
            .map(|r| self.ack(&inner, r))
            .collect()
    }

    /// The acknowledgement of `request`: the partitions owned now and their next offsets.
    /// Called with the lock held, so no record is routed in between.
    fn ack(&self, inner: &Inner, request: AckRequest) -> (i32, PresenceAcked) {
        let next: BTreeMap<i32, i64> = inner
            .parts
            .iter()
            .map(|(p, part)| (*p, part.next))
            .collect();
        let ack = PresenceAcked {
            meta: Meta::new(self.actor.clone()),
            gateway_slot: request.gateway_slot,
            user_id: request.user_id,
            presence_partition: request.presence_partition,
            presence_offset: request.presence_offset,
            partitions: next.keys().copied().collect(),
            next_offsets: next.values().copied().collect(),
        };
        (request.gateway_slot, ack)
    }

    pub fn presence_caught_up(&self, ends: &[i64]) -> bool {
        self.lock().presence.caught_up(ends)
    }

    /// Routes one record of `events`: updates the partition's state and returns what to
    /// append. A record of a partition not (or not yet) ours, or already routed, gives
    /// nothing.
    ///
    /// The lock is held for the state update and the presence lookups of a small
    /// conversation's members; for a large group's message, for the state update,
    /// reading the active slots and the presence of the (at most 20) members it
    /// mentions; never while encoding.
    pub fn route(&self, record: &LogRecord) -> Vec<Output> {
        let decoded = match record.value.as_deref().map(decode_any) {
            Some(Ok(r)) => Some(r),
            Some(Err(e)) => {
                warn!(partition = record.partition, offset = record.offset, error = %e, "undecodable event skipped");
                None
            }
            None => None,
        };
        let (Some(any), Some(raw)) = (decoded.as_ref(), record.value.as_deref()) else {
            // Still ours to skip: the next offset moves on.
            let mut inner = self.lock();
            if let Some(part) = inner.parts.get_mut(&record.partition) {
                if part.state.is_some() && record.offset >= part.next {
                    part.next = record.offset + 1;
                }
            }
            return Vec::new();
        };
        let now = now_millis();
        let mut inner = self.lock();
        let Inner { presence, parts } = &mut *inner;
        let Some(part) = parts.get_mut(&record.partition) else {
            return Vec::new();
        };
        let Some(state) = part.state.as_mut() else {
            return Vec::new();
        };
        if record.offset < part.next {
            return Vec::new();
        }
        part.next = record.offset + 1;
        let (users, chain) = match state.apply(record.offset, any) {
            Routed::Nothing => return Vec::new(),
            Routed::Membership => {
                // The slots with someone online: a gateway with nobody there has no
                // index to keep. Its next session loads its groups from views that
                // hold the log up to where routing to it begins (this worker's
                // acknowledgement of that session's presence).
                let active = presence.active_slots();
                drop(inner);
                let Some(conversation) = conversation_of(any) else {
                    return Vec::new();
                };
                return self.broadcast(record, conversation, Chain::NONE, raw, &active);
            }
            Routed::Change(Recipients::Broadcast, prev) => {
                let active = presence.active_slots();
                drop(inner);
                let Some(conversation) = conversation_of(any) else {
                    return Vec::new();
                };
                return self.broadcast(record, conversation, Chain::change(prev), raw, &active);
            }
            Routed::Pair(users) => (users, Chain::NONE),
            Routed::Change(Recipients::Members(users), prev) => (users, Chain::change(prev)),
            Routed::Message(posted) => {
                let plan = self.plan(&posted, state, presence, now);
                drop(inner);
                return self.message(record, raw, posted, plan);
            }
        };
        // To the slots where each of `users` is online.
        let mut by_slot: BTreeMap<i32, Vec<String>> = BTreeMap::new();
        for u in users {
            for s in presence.online_slots(&u, now) {
                by_slot.entry(s).or_default().push(u.clone());
            }
        }
        drop(inner);
        let Some(conversation) = conversation_of(any) else {
            return Vec::new();
        };
        by_slot
            .into_iter()
            .filter_map(|(slot, recipients)| {
                let batch = self.batch(record, conversation, slot, recipients, chain, raw);
                Some(Output::Delivery {
                    slot,
                    key: conversation.to_string(),
                    value: encode_logged(&batch)?,
                })
            })
            .collect()
    }

    /// Where a message goes, decided under the lock: the large groups' slots and the
    /// offline members to push, or each online member's slots and the offline members.
    fn plan(
        &self,
        posted: &Posted<'_>,
        state: &PartitionState,
        presence: &PresenceView,
        now: i64,
    ) -> Plan {
        match &posted.recipients {
            Recipients::Broadcast => {
                // Large groups push only to offline members who are mentioned, or
                // who opted in to every message.
                let mut named = posted.message.mentions();
                if let Some(book) = self.opt_ins.get() {
                    for u in book.opted_in(&posted.message.conversation_id) {
                        if !named.contains(&u) {
                            named.push(u);
                        }
                    }
                }
                let pushed: Vec<String> = named
                    .into_iter()
                    .filter(|u| {
                        u != posted.message.sender()
                            && state.has_member(&posted.message.conversation_id, u)
                            && presence.online_slots(u, now).is_empty()
                    })
                    .collect();
                Plan::Broadcast {
                    slots: presence.active_slots(),
                    pushed,
                }
            }
            Recipients::Members(members) => {
                let mut by_slot: BTreeMap<i32, Vec<String>> = BTreeMap::new();
                let mut offline = Vec::new();
                for user in members {
                    let slots = presence.online_slots(user, now);
                    if slots.is_empty() {
                        if user != posted.message.sender() {
                            offline.push(user.clone());
                        }
                    } else {
                        for s in slots {
                            by_slot.entry(s).or_default().push(user.clone());
                        }
                    }
                }
                Plan::Members { by_slot, offline }
            }
        }
    }

    /// The outputs of a message: its deliveries, and the inbox entries and push jobs of
    /// its offline recipients.
    fn message(
        &self,
        record: &LogRecord,
        raw: &[u8],
        posted: Posted<'_>,
        plan: Plan,
    ) -> Vec<Output> {
        let m = posted.message;
        tracing::debug!(
            conversation_id = %m.conversation_id,
            message_id = %m.message_id,
            seq = record.offset,
            "route"
        );
        let chain = Chain {
            prev_seq: posted.prev.to_record(),
            prev_change: posted.prev_change.to_record(),
        };
        let (by_slot, offline) = match plan {
            Plan::Members { by_slot, offline } => (by_slot, offline),
            Plan::Broadcast { slots, pushed } => {
                let mut out = self.broadcast(record, &m.conversation_id, chain, raw, &slots);
                for user in pushed {
                    let job = PushJob::for_message(&self.actor, &user, record.offset, m);
                    if let Some(value) = encode_logged(&job) {
                        out.push(Output::Push { user, value });
                    }
                }
                return out;
            }
        };
        let mut out = Vec::with_capacity(by_slot.len() + 2 * offline.len());
        for (slot, recipients) in by_slot {
            // Batches stay well under the broker's record size, whatever the group.
            for recipients in chunks(recipients, raw.len()) {
                let batch = self.batch(record, &m.conversation_id, slot, recipients, chain, raw);
                if let Some(value) = encode_logged(&batch) {
                    out.push(Output::Delivery {
                        slot,
                        key: m.conversation_id.clone(),
                        value,
                    });
                }
            }
        }
        for user in offline {
            let entry = InboxEntry::for_message(&self.actor, &user, record.offset, m);
            let job = PushJob::for_message(&self.actor, &user, record.offset, m);
            if let (Some(e), Some(j)) = (encode_logged(&entry), encode_logged(&job)) {
                out.push(Output::Inbox {
                    user: user.clone(),
                    value: e,
                });
                out.push(Output::Push { user, value: j });
            }
        }
        out
    }

    /// One delivery of `raw` to each of `slots`, with no recipient list: each gateway
    /// hands it to its own sessions of the conversation's members.
    pub(crate) fn broadcast(
        &self,
        record: &LogRecord,
        conversation: &str,
        chain: Chain,
        raw: &[u8],
        slots: &[i32],
    ) -> Vec<Output> {
        let batch = self.batch(record, conversation, 0, Vec::new(), chain, raw);
        let mut out = Vec::with_capacity(slots.len());
        for &slot in slots {
            let batch = DeliveryBatch {
                gateway_slot: slot,
                ..batch.clone()
            };
            if let Some(value) = encode_logged(&batch) {
                out.push(Output::Delivery {
                    slot,
                    key: conversation.to_string(),
                    value,
                });
            }
        }
        out
    }

    pub(crate) fn batch(
        &self,
        record: &LogRecord,
        conversation: &str,
        slot: i32,
        recipients: Vec<String>,
        chain: Chain,
        raw: &[u8],
    ) -> DeliveryBatch {
        DeliveryBatch {
            meta: Meta::new(self.actor.clone()),
            gateway_slot: slot,
            conversation_id: conversation.to_string(),
            broadcast: recipients.is_empty(),
            recipients,
            source_topic: record.topic.clone(),
            source_partition: record.partition,
            source_offset: record.offset,
            prev_seq: chain.prev_seq,
            event: raw.to_vec(),
            prev_change: chain.prev_change,
        }
    }
}

/// Where a routed record stands in its conversation's two chains, as `DeliveryBatch`
/// carries them: -1 for "none before", `None` for "unknown" (and for records outside a
/// chain: membership changes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Chain {
    prev_seq: Option<i64>,
    prev_change: Option<i64>,
}

impl Chain {
    pub(crate) const NONE: Chain = Chain {
        prev_seq: None,
        prev_change: None,
    };

    /// A change to a message: in the change chain only.
    fn change(prev: Prev) -> Chain {
        Chain {
            prev_seq: None,
            prev_change: prev.to_record(),
        }
    }
}

/// Where a message goes ([`Router::plan`]).
enum Plan {
    /// A large group: every slot with anyone online; push jobs for `pushed`.
    Broadcast {
        slots: Vec<i32>,
        pushed: Vec<String>,
    },
    /// Each online recipient's slots; inbox entries and push jobs for `offline`.
    Members {
        by_slot: BTreeMap<i32, Vec<String>>,
        offline: Vec<String>,
    },
}

/// The conversation a membership record is about.
fn conversation_of(record: &AnyRecord) -> Option<&str> {
    match record {
        AnyRecord::ConversationCreated(c) => Some(&c.conversation_id),
        AnyRecord::MembersAdded(a) => Some(&a.conversation_id),
        AnyRecord::MemberRemoved(r) => Some(&r.conversation_id),
        AnyRecord::MessageEdited(e) => Some(&e.conversation_id),
        AnyRecord::MessageDeleted(d) => Some(&d.conversation_id),
        AnyRecord::ReactionSet(r) => Some(&r.conversation_id),
        _ => None,
    }
}

/// The largest delivery batch the router writes, in bytes (the broker's default limit
/// is 1 MiB).
pub const MAX_BATCH_BYTES: usize = 256 * 1024;

/// Splits `recipients` so that each batch, with an event of `event_bytes`, stays within
/// [`MAX_BATCH_BYTES`] (a batch always holds at least one recipient).
fn chunks(recipients: Vec<String>, event_bytes: usize) -> Vec<Vec<String>> {
    let budget = MAX_BATCH_BYTES.saturating_sub(event_bytes + 512);
    let mut out = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut size = 0;
    for r in recipients {
        let cost = r.len() + 2;
        if !current.is_empty() && size + cost > budget {
            out.push(std::mem::take(&mut current));
            size = 0;
        }
        size += cost;
        current.push(r);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

fn encode_logged<R: parley_schemas::Record>(r: &R) -> Option<Vec<u8>> {
    match parley_schemas::encode(r) {
        Ok(v) => Some(v),
        Err(e) => {
            warn!(error = %e, "encoding an output failed");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_recipient_lists_are_split_under_the_batch_limit() {
        let users: Vec<String> = (0..50_000).map(|i| format!("user-{i:08}")).collect();
        let parts = chunks(users.clone(), 4096);
        assert!(parts.len() > 1);
        assert!(parts
            .iter()
            .all(|p| p.iter().map(|u| u.len() + 2).sum::<usize>() + 4096 < MAX_BATCH_BYTES));
        assert_eq!(parts.concat(), users, "every recipient once, in order");
        assert_eq!(chunks(vec!["a".into()], 10 * MAX_BATCH_BYTES).len(), 1);
    }
}
