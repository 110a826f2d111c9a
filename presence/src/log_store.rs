//! [`LogPresence`]: presence derived from the compacted `presence` topic.
//!
//! Gateways already keep one record per (user, gateway slot) there for routing,
//! refreshed every heartbeat, with a tombstone when the user's last session on that
//! gateway closes. This store reads the whole topic and keeps, per user, when each slot
//! expires and when the last one ended. A sweep every 500 ms notices TTLs that lapsed
//! (a gateway that died without tombstones).
//!
//! Its writes are such records too, so a gateway using this store writes nothing more
//! than it does for routing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use parley_schemas::{decode, encode, now_millis, Meta, PresenceUpdated};
use parley_sequencer::{follow, EventLog};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::store::{seen_of, PresenceStore, Result, Seen, CHANGES};

#[derive(Default)]
struct User {
    /// Slot → when its record expires.
    slots: HashMap<i32, i64>,
    /// When a slot last ended by tombstone.
    ended: Option<i64>,
    /// Online as last told (to notice lapses).
    online: bool,
}

#[derive(Default)]
struct Users(HashMap<String, User>);

impl Users {
    /// Applies one record; whether the user's online state flipped.
    fn apply(&mut self, user: &str, slot: i32, expires: Option<i64>, at: i64, now: i64) -> bool {
        let entry = self.0.entry(user.to_string()).or_default();
        match expires {
            Some(e) => {
                entry.slots.insert(slot, e);
            }
            None => {
                if let Some(e) = entry.slots.remove(&slot) {
                    // A slot that had lapsed before its tombstone ended at its expiry.
                    entry.ended = entry.ended.max(Some(at.min(e)));
                }
            }
        }
        let seen = seen_of(entry.slots.values().copied(), entry.ended, now);
        let flipped = seen.online != entry.online;
        entry.online = seen.online;
        flipped
    }

    /// Users whose TTL lapsed since the last sweep.
    fn sweep(&mut self, now: i64) -> Vec<String> {
        let mut lapsed = Vec::new();
        for (user, entry) in self.0.iter_mut() {
            if entry.online && !entry.slots.values().any(|&e| e > now) {
                entry.online = false;
                lapsed.push(user.clone());
            }
        }
        lapsed
    }

    fn seen(&self, user: &str, now: i64) -> Seen {
        self.0
            .get(user)
            .map(|u| seen_of(u.slots.values().copied(), u.ended, now))
            .unwrap_or_default()
    }
}

pub struct LogPresence {
    log: Arc<dyn EventLog>,
    topic: String,
    users: Mutex<Users>,
    changes: broadcast::Sender<String>,
}

impl LogPresence {
    /// Follows `topic` from its start until `shutdown`. Returns once what the topic held
    /// when it was called has been read (or after `catch_up`, with a warning).
    pub async fn follow(
        log: Arc<dyn EventLog>,
        topic: &str,
        catch_up: Duration,
        shutdown: CancellationToken,
    ) -> Result<Arc<Self>> {
        let store = Arc::new(LogPresence {
            log: log.clone(),
            topic: topic.to_string(),
            users: Mutex::new(Users::default()),
            changes: broadcast::channel(CHANGES).0,
        });
        let reader = store.clone();
        let following =
            follow::follow(log, topic, shutdown.clone(), move |r| reader.on_record(r)).await?;
        let sweeper = store.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let lapsed = sweeper.lock().sweep(now_millis());
                for user in lapsed {
                    debug!(user = %user, "presence lapsed");
                    let _ = sweeper.changes.send(user);
                }
            }
        });
        if !following.loaded(catch_up).await {
            warn!(
                topic,
                "presence not read to its end in time; serving what was read"
            );
        }
        Ok(store)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Users> {
        self.users.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn on_record(&self, r: &parley_sequencer::LogRecord) {
        let Some((user, slot)) = r
            .key
            .as_deref()
            .and_then(|k| std::str::from_utf8(k).ok())
            .and_then(|k| k.rsplit_once('/'))
            .and_then(|(u, s)| Some((u.to_string(), s.parse::<i32>().ok()?)))
        else {
            return;
        };
        let now = now_millis();
        let expires = match &r.value {
            None => None,
            Some(v) => match decode::<PresenceUpdated>(v) {
                Ok(p) => Some(p.expires_at),
                Err(e) => {
                    warn!(offset = r.offset, error = %e, "undecodable presence record skipped");
                    return;
                }
            },
        };
        let at = r.timestamp_ms.unwrap_or(now);
        if self.lock().apply(&user, slot, expires, at, now) {
            let _ = self.changes.send(user);
        }
    }
}

#[async_trait]
impl PresenceStore for LogPresence {
    async fn refresh(&self, user: &str, device: i32, ttl: Duration) -> Result<()> {
        let record = PresenceUpdated {
            meta: Meta::new(format!("gateway:{device}")),
            user_id: user.to_string(),
            gateway_slot: device,
            sessions: 1,
            expires_at: now_millis() + ttl.as_millis() as i64,
            ack: false,
        };
        let value = encode(&record).map_err(|e| crate::Error::Other(e.to_string()))?;
        let key = PresenceUpdated::key(user, device);
        self.log
            .append(&self.topic, key.as_bytes(), Some(&value))
            .await?;
        Ok(())
    }

    async fn gone(&self, user: &str, device: i32) -> Result<()> {
        let key = PresenceUpdated::key(user, device);
        self.log.append(&self.topic, key.as_bytes(), None).await?;
        Ok(())
    }

    async fn lookup(&self, users: &[String]) -> Result<Vec<Seen>> {
        let now = now_millis();
        let state = self.lock();
        Ok(users.iter().map(|u| state.seen(u, now)).collect())
    }

    fn changes(&self) -> broadcast::Receiver<String> {
        self.changes.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lapsed_slot_ends_at_its_expiry_and_the_sweep_tells_once() {
        let mut users = Users::default();
        assert!(users.apply("a", 1, Some(100), 0, 10));
        assert!(!users.apply("a", 2, Some(200), 0, 10), "a second device");
        assert!(users.sweep(150).is_empty(), "slot 2 still lives");
        assert_eq!(users.sweep(250), vec!["a".to_string()]);
        assert!(users.sweep(260).is_empty());
        assert_eq!(users.seen("a", 260).last_seen, Some(200));
        // A late tombstone of a lapsed slot does not move last_seen past the expiry.
        users.apply("a", 2, None, 900, 900);
        assert_eq!(users.seen("a", 900).last_seen, Some(200));
    }
}
