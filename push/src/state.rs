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
        state_key(&self.user_id, &self.conversation_id)
    }
}

/// The key of `user`'s record of `conversation` in `push-state`.
pub fn state_key(user: &str, conversation: &str) -> String {
    format!("{user}\u{1f}{conversation}")
}

/// The partition of `push-state` that holds `user`'s records (all of them in one).
fn user_partition(user: &str, partitions: i32) -> i32 {
    partition_for_key(user.as_bytes(), partitions.max(1))
}

/// The user and conversation a `push-state` key names.
fn key_parts(key: &[u8]) -> Option<(&str, &str)> {
    std::str::from_utf8(key).ok()?.split_once('\u{1f}')
}

/// Erases `user`'s records of `conversations` from `push-state` (their tombstones, in
/// the user's partition): what the push role noted of their notifications (previews
/// included) is gone once compaction has run, and from every push role at once.
pub async fn forget(
    log: &dyn EventLog,
    topic: &str,
    user: &str,
    conversations: &[String],
) -> parley_sequencer::Result<()> {
    let p = user_partition(user, log.partition_count(topic).await?);
    for conversation in conversations {
        log.append_to(topic, p, state_key(user, conversation).as_bytes(), None)
            .await?;
    }
    Ok(())
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
                if let Some((user, conv)) = r.key.as_deref().and_then(key_parts) {
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
        user_partition(user, self.partitions)
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use parley_sequencer::{EmbeddedConfig, EmbeddedLog, EventLog, TopicSpec};
    use tokio_util::sync::CancellationToken;

    use super::*;

    fn intent(user: &str, conversation: &str, last_seq: i64) -> Intent {
        Intent {
            user_id: user.into(),
            conversation_id: conversation.into(),
            first_seq: 0,
            last_seq,
            done: true,
            notifications: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_forgotten_users_records_leave_every_follower() {
        let dir = tempfile::tempdir().unwrap();
        let log: Arc<dyn EventLog> = Arc::new(
            EmbeddedLog::open(EmbeddedConfig::new(dir.path()))
                .await
                .unwrap(),
        );
        log.provision(&[TopicSpec::plain("push-state", 4, 1)])
            .await
            .unwrap();
        let stop = CancellationToken::new();
        let follow = || {
            PushState::follow(
                log.clone(),
                "push-state",
                Duration::from_secs(5),
                stop.clone(),
            )
        };
        let writer = follow().await.unwrap();
        for i in [
            intent("bob", "c1", 3),
            intent("bob", "c2", 4),
            intent("amy", "c1", 5),
        ] {
            writer.write(&i).await.unwrap();
        }
        forget(&*log, "push-state", "bob", &["c1".into(), "c2".into()])
            .await
            .unwrap();
        // Another follower, reading the topic from its start, holds amy's alone; so
        // does the first, once the tombstones reach it.
        let reader = follow().await.unwrap();
        for state in [&reader, &writer] {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while state.covered("bob", "c1").is_some() || state.covered("bob", "c2").is_some() {
                assert!(tokio::time::Instant::now() < deadline, "bob's records stay");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert_eq!(state.covered("amy", "c1"), Some(5));
        }
        stop.cancel();
    }
}
