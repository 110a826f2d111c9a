//! What the push role has notified, kept in the compacted `push-state` topic.
//!
//! Before a collapsed notification goes out, its intent is written there, keyed by
//! (user, conversation): the seqs it covers and the exact bodies for each device. Once
//! every device has it (or it is dead-lettered), the same key is written again, marked
//! done. A push role that starts reads the topic whole:
//! - a job whose seq an intent already covers is not notified again;
//! - an intent not marked done is sent again, byte for byte, so the receiver sees the
//!   same notification id and can drop the repeat.
//!
//! So a crash between a delivery and its commit sends nothing twice under a new id.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use parley_sequencer::partition::partition_for_key;
use parley_sequencer::{follow, EventLog};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::payload::Notification;

/// One collapsed notification, to every device of its user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    pub user_id: String,
    pub conversation_id: String,
    pub first_seq: i64,
    pub last_seq: i64,
    /// Every device has it, or it was dead-lettered.
    pub done: bool,
    pub notifications: Vec<Notification>,
}

impl Intent {
    pub fn key(&self) -> String {
        format!("{}\u{1f}{}", self.user_id, self.conversation_id)
    }
}

pub struct PushState {
    log: Arc<dyn EventLog>,
    topic: String,
    partitions: i32,
    /// (user, conversation) → the newest intent.
    intents: Mutex<HashMap<(String, String), Intent>>,
}

impl PushState {
    /// Reads `topic` from its start, then keeps following it (another member's intents
    /// count too, after a rebalance). Returns once what it held is read.
    pub async fn follow(
        log: Arc<dyn EventLog>,
        topic: &str,
        catch_up: Duration,
        shutdown: CancellationToken,
    ) -> parley_sequencer::Result<Arc<Self>> {
        let state = Arc::new(PushState {
            log: log.clone(),
            topic: topic.to_string(),
            partitions: log.partition_count(topic).await?,
            intents: Mutex::new(HashMap::new()),
        });
        let reader = state.clone();
        let following = follow::follow(log, topic, shutdown, move |r| {
            let Some(v) = &r.value else {
                // A tombstone: the user's record here is erased.
                if let Some((user, conv)) = r
                    .key
                    .as_deref()
                    .and_then(|k| std::str::from_utf8(k).ok())
                    .and_then(|k| k.split_once('\u{1f}'))
                {
                    reader.lock().remove(&(user.to_string(), conv.to_string()));
                }
                return;
            };
            match serde_json::from_slice::<Intent>(v) {
                Ok(intent) => reader.remember(intent),
                Err(e) => warn!(offset = r.offset, error = %e, "unreadable push intent skipped"),
            }
        })
        .await?;
        if !following.loaded(catch_up).await {
            warn!(topic, "push-state not read to its end in time");
        }
        Ok(state)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Intent>> {
        self.intents.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `intent` unless a newer one of its key is known. A finished intent keeps
    /// only its range: its bodies are not needed again.
    fn remember(&self, mut intent: Intent) {
        if intent.done {
            intent.notifications = Vec::new();
        }
        let key = (intent.user_id.clone(), intent.conversation_id.clone());
        let mut intents = self.lock();
        match intents.get(&key) {
            Some(known) if known.last_seq > intent.last_seq => {}
            Some(known) if known.last_seq == intent.last_seq && known.done => {}
            _ => {
                intents.insert(key, intent);
            }
        }
    }

    /// The highest seq of (user, conversation) already notified (or being notified).
    pub fn covered(&self, user: &str, conversation: &str) -> Option<i64> {
        self.lock()
            .get(&(user.to_string(), conversation.to_string()))
            .map(|i| i.last_seq)
    }

    /// Intents written but not marked done (by any member) in the partitions given.
    pub fn unfinished(&self, partitions: &[i32]) -> Vec<Intent> {
        self.lock()
            .values()
            .filter(|i| !i.done && partitions.contains(&self.partition_of(&i.user_id)))
            .cloned()
            .collect()
    }

    fn partition_of(&self, user: &str) -> i32 {
        partition_for_key(user.as_bytes(), self.partitions.max(1))
    }

    /// Writes `intent` (it then counts as covered), once the log has it.
    pub async fn write(&self, intent: &Intent) -> parley_sequencer::Result<()> {
        let value = serde_json::to_vec(intent)
            .map_err(|e| parley_sequencer::Error::Rejected(e.to_string()))?;
        let partition = self.partition_of(&intent.user_id);
        self.log
            .append_to(
                &self.topic,
                partition,
                intent.key().as_bytes(),
                Some(&value),
            )
            .await?;
        self.remember(intent.clone());
        Ok(())
    }
}
