//! Live signals: receipts and typing, routed to the online members of their
//! conversation.
//!
//! `receipts` and `ephemeral` are keyed by conversation like `events` and have as many
//! partitions, so partition p of each belongs with partition p of `events`: the worker
//! that owns p knows the conversations' members. A signal is only worth something live,
//! so the worker reads its partitions of both topics from their end as of each change of
//! its assignment, and routes what it reads once, to online members only: no inbox, no
//! retries after a takeover. The receipts themselves are kept by the projector's
//! receipt view; a client that missed a routed one reads the view.

use std::sync::Arc;

use futures::StreamExt;
use parley_schemas::{decode_any, now_millis, AnyRecord, DeliveryBatch, Meta};
use parley_sequencer::{EventLog, LogRecord, StartAt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::config::FanoutConfig;
use crate::router::{Output, Router};

impl Router {
    /// The deliveries of one receipt or typing record: one per gateway slot where a member
    /// of its conversation is online. A typing record skips the typist; a record from a
    /// non-member goes nowhere.
    pub fn route_signal(&self, record: &LogRecord) -> Vec<Output> {
        let Some(raw) = record.value.as_deref() else {
            return Vec::new();
        };
        let (conversation, actor, skip_actor) = match decode_any(raw) {
            Ok(AnyRecord::ReceiptRecorded(r)) => (r.conversation_id, r.meta.actor, false),
            Ok(AnyRecord::TypingChanged(t)) => (t.conversation_id, t.meta.actor, true),
            Ok(_) => return Vec::new(),
            Err(e) => {
                debug!(error = %e, "undecodable signal skipped");
                return Vec::new();
            }
        };
        let now = now_millis();
        let inner = self.lock();
        let Some(members) = inner
            .parts
            .get(&record.partition)
            .and_then(|p| p.state.as_ref())
            .and_then(|s| s.members(&conversation))
        else {
            return Vec::new();
        };
        if !members.contains(&actor) {
            return Vec::new();
        }
        let mut by_slot: std::collections::BTreeMap<i32, Vec<String>> = Default::default();
        for user in members {
            if skip_actor && user == actor {
                continue;
            }
            for slot in inner.presence.online_slots(&user, now) {
                by_slot.entry(slot).or_default().push(user.clone());
            }
        }
        drop(inner);
        by_slot
            .into_iter()
            .filter_map(|(slot, recipients)| {
                let batch = DeliveryBatch {
                    meta: Meta::new(self.actor.clone()),
                    gateway_slot: slot,
                    conversation_id: conversation.clone(),
                    recipients,
                    broadcast: false,
                    source_topic: record.topic.clone(),
                    source_partition: record.partition,
                    source_offset: record.offset,
                    prev_seq: None,
                    event: raw.to_vec(),
                };
                let value = parley_schemas::encode(&batch).ok()?;
                Some(Output::Delivery {
                    slot,
                    key: conversation.clone(),
                    value,
                })
            })
            .collect()
    }
}

/// The signal reader of the current assignment; replaced when the assignment changes.
#[derive(Default)]
pub struct Signals {
    current: Option<CancellationToken>,
}

impl Signals {
    /// Follows `receipts` and `ephemeral` for the partitions the router owns now, from
    /// their end; stops the previous reader.
    pub fn restart(
        &mut self,
        config: &FanoutConfig,
        log: &Arc<dyn EventLog>,
        router: &Arc<Router>,
        shutdown: &CancellationToken,
    ) {
        if let Some(old) = self.current.take() {
            old.cancel();
        }
        let owned = router.owned();
        if owned.is_empty() {
            return;
        }
        let stop = shutdown.child_token();
        self.current = Some(stop.clone());
        let (log, router, topics) = (log.clone(), router.clone(), config.topics.clone());
        tokio::spawn(async move {
            let from: Vec<(i32, StartAt)> = owned.iter().map(|p| (*p, StartAt::End)).collect();
            let mut streams = Vec::new();
            for topic in [&topics.receipts, &topics.ephemeral] {
                match log.read(topic, &from).await {
                    Ok(s) => streams.push(s),
                    Err(e) => {
                        warn!(topic, error = %e, "cannot follow signals; receipts and typing are not routed live");
                        return;
                    }
                }
            }
            let mut records = futures::stream::select_all(streams);
            loop {
                let next = tokio::select! {
                    _ = stop.cancelled() => return,
                    n = records.next() => n,
                };
                let record = match next {
                    Some(Ok(r)) => r,
                    Some(Err(e)) => {
                        warn!(error = %e, "signal stream failed");
                        return;
                    }
                    None => return,
                };
                for output in router.route_signal(&record) {
                    if let Output::Delivery { slot, key, value } = output {
                        if let Err(e) = log
                            .append_to(&topics.deliveries, slot, key.as_bytes(), Some(&value))
                            .await
                        {
                            debug!(error = %e, "a signal was not delivered");
                        }
                    }
                }
            }
        });
    }
}
