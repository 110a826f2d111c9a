//! [`LogPresence`]: presence derived from the compacted `presence` topic.
//!
//! Gateways already keep one record per (user, gateway slot) there for routing, with a
//! tombstone when the user's last session on that gateway closes, and one lease per
//! slot, renewed every heartbeat, which keeps the records of the gateway's current run
//! alive. This store reads the whole topic and keeps, per user, when each slot expires
//! (its record's own expiry, or its lease's) and when the last one ended. A sweep every
//! 500 ms notices TTLs that lapsed (a gateway that died without tombstones: its lease
//! lapses, and all its users with it; their `last_seen` is the lease's expiry).
//!
//! Its writes are such records too, so a gateway using this store writes nothing more
//! than it does for routing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use parley_schemas::{decode, encode, now_millis, Meta, PresenceUpdated, SlotLease};
use parley_sequencer::{follow, EventLog};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::store::{seen_of, PresenceStore, Result, Seen, CHANGES};

#[derive(Default)]
struct User {
    /// Slot → when its record expires by itself, and when it was written.
    slots: HashMap<i32, (i64, i64)>,
    /// When a slot last ended by tombstone.
    ended: Option<i64>,
    /// Online as last told (to notice lapses).
    online: bool,
}

#[derive(Default)]
struct Users {
    users: HashMap<String, User>,
    /// Slot → its lease.
    leases: HashMap<i32, SlotLease>,
}

/// When a user's record at `slot` expires: by itself, or with the slot's lease if that
/// lease is of the run that wrote it.
fn expiry(leases: &HashMap<i32, SlotLease>, slot: i32, (expires, written): (i64, i64)) -> i64 {
    match leases.get(&slot) {
        Some(l) if written >= l.since => expires.max(l.expires_at),
        _ => expires,
    }
}

fn seen_of_user(leases: &HashMap<i32, SlotLease>, u: &User, now: i64) -> Seen {
    seen_of(
        u.slots.iter().map(|(s, r)| expiry(leases, *s, *r)),
        u.ended,
        now,
    )
}

impl Users {
    /// Applies one record; whether the user's online state flipped.
    fn apply(
        &mut self,
        user: &str,
        slot: i32,
        record: Option<(i64, i64)>,
        at: i64,
        now: i64,
    ) -> bool {
        let entry = self.users.entry(user.to_string()).or_default();
        match record {
            Some(r) => {
                entry.slots.insert(slot, r);
            }
            None => {
                if let Some(r) = entry.slots.remove(&slot) {
                    // A slot that had lapsed before its tombstone ended at its expiry.
                    let e = expiry(&self.leases, slot, r);
                    entry.ended = entry.ended.max(Some(at.min(e)));
                }
            }
        }
        let seen = seen_of_user(&self.leases, entry, now);
        let flipped = seen.online != entry.online;
        entry.online = seen.online;
        flipped
    }

    /// Applies a slot's lease (`None`: its tombstone); the users whose online state
    /// flipped. A renewal of a lease that had not lapsed flips nobody and costs nothing;
    /// a new run's lease, or one renewed after a lapse, looks at every user.
    fn apply_lease(&mut self, slot: i32, lease: Option<SlotLease>, now: i64) -> Vec<String> {
        let quiet = match (self.leases.get(&slot), &lease) {
            (Some(old), Some(new)) => old.since == new.since && old.expires_at > now,
            _ => false,
        };
        match lease {
            Some(l) => self.leases.insert(slot, l),
            None => self.leases.remove(&slot),
        };
        if quiet {
            return Vec::new();
        }
        let leases = &self.leases;
        let mut flipped = Vec::new();
        for (user, entry) in self.users.iter_mut() {
            if !entry.slots.contains_key(&slot) {
                continue;
            }
            let online = seen_of_user(leases, entry, now).online;
            if online != entry.online {
                entry.online = online;
                flipped.push(user.clone());
            }
        }
        flipped
    }

    /// Users whose TTL lapsed since the last sweep.
    fn sweep(&mut self, now: i64) -> Vec<String> {
        let leases = &self.leases;
        let mut lapsed = Vec::new();
        for (user, entry) in self.users.iter_mut() {
            if entry.online
                && !entry
                    .slots
                    .iter()
                    .any(|(s, r)| expiry(leases, *s, *r) > now)
            {
                entry.online = false;
                lapsed.push(user.clone());
            }
        }
        lapsed
    }

    fn seen(&self, user: &str, now: i64) -> Seen {
        self.users
            .get(user)
            .map(|u| seen_of_user(&self.leases, u, now))
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
        let key = r.key.as_deref().and_then(|k| std::str::from_utf8(k).ok());
        if let Some(slot) = key.and_then(SlotLease::slot_of_key) {
            let lease = match r.value.as_deref().map(decode::<SlotLease>) {
                None => None,
                Some(Ok(l)) => Some(l),
                Some(Err(e)) => {
                    warn!(offset = r.offset, error = %e, "undecodable slot lease skipped");
                    return;
                }
            };
            let flipped = self.lock().apply_lease(slot, lease, now_millis());
            for user in flipped {
                let _ = self.changes.send(user);
            }
            return;
        }
        let Some((user, slot)) = key
            .and_then(|k| k.rsplit_once('/'))
            .and_then(|(u, s)| Some((u.to_string(), s.parse::<i32>().ok()?)))
        else {
            return;
        };
        let now = now_millis();
        let record = match &r.value {
            None => None,
            Some(v) => match decode::<PresenceUpdated>(v) {
                Ok(p) => Some((p.expires_at, p.meta.occurred_at)),
                Err(e) => {
                    warn!(offset = r.offset, error = %e, "undecodable presence record skipped");
                    return;
                }
            },
        };
        let at = r.timestamp_ms.unwrap_or(now);
        if self.lock().apply(&user, slot, record, at, now) {
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
        assert!(users.apply("a", 1, Some((100, 0)), 0, 10));
        assert!(
            !users.apply("a", 2, Some((200, 0)), 0, 10),
            "a second device"
        );
        assert!(users.sweep(150).is_empty(), "slot 2 still lives");
        assert_eq!(users.sweep(250), vec!["a".to_string()]);
        assert!(users.sweep(260).is_empty());
        assert_eq!(users.seen("a", 260).last_seen, Some(200));
        // A late tombstone of a lapsed slot does not move last_seen past the expiry.
        users.apply("a", 2, None, 900, 900);
        assert_eq!(users.seen("a", 900).last_seen, Some(200));
    }
}

#[cfg(test)]
mod lease_tests {
    use super::*;

    fn lease(slot: i32, since: i64, expires_at: i64) -> Option<SlotLease> {
        Some(SlotLease {
            meta: Meta::new("gateway"),
            gateway_slot: slot,
            since,
            expires_at,
        })
    }

    #[test]
    fn a_lease_keeps_its_runs_users_online_and_their_last_seen_is_its_expiry() {
        let mut users = Users::default();
        assert!(users.apply_lease(1, lease(1, 50, 500), 10).is_empty());
        // Written at 60 by this run, its own expiry at 100.
        assert!(users.apply("a", 1, Some((100, 60)), 0, 70));
        assert!(users.sweep(300).is_empty(), "the lease keeps it");
        assert!(
            users.apply_lease(1, lease(1, 50, 900), 400).is_empty(),
            "a renewal flips nobody"
        );
        assert_eq!(users.sweep(1000), vec!["a".to_string()]);
        assert_eq!(users.seen("a", 1000).last_seen, Some(900));
        // Renewed after the lapse: online again, and told.
        assert_eq!(
            users.apply_lease(1, lease(1, 50, 2000), 1100),
            vec!["a".to_string()]
        );
        // A new run of the slot does not keep the earlier run's record.
        assert_eq!(
            users.apply_lease(1, lease(1, 1500, 3000), 1600),
            vec!["a".to_string()]
        );
        assert!(!users.seen("a", 1600).online);
    }
}
