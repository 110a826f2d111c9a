//! Every gateway's transit keys, as the `transit-keys` topic holds them: read from its
//! start when a role starts, then followed. A tombstone takes a key out.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use parley_schemas::sealed::{ContentKey, Kek};
use parley_schemas::{decode, SealedBody, TransitKey};
use parley_sequencer::EventLog;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::Result;

/// How long a role waits at start for the transit keys the topic holds.
const CATCH_UP: Duration = Duration::from_secs(30);

/// The transit keys known, by id.
pub struct TransitRing {
    kek: Kek,
    /// Each key, with when it expires (ms since the epoch).
    keys: RwLock<HashMap<String, (ContentKey, i64)>>,
    changed: Notify,
}

impl TransitRing {
    /// A ring that has read `topic` to its end, and follows it until `shutdown`.
    pub async fn start(
        log: Arc<dyn EventLog>,
        topic: &str,
        kek: Kek,
        shutdown: CancellationToken,
    ) -> Result<Arc<TransitRing>> {
        let ring = Arc::new(TransitRing {
            kek,
            keys: RwLock::new(HashMap::new()),
            changed: Notify::new(),
        });
        // The shared follower: every record from the start, then live. A tail of
        // tombstones compaction has dropped cannot hold the start up past `CATCH_UP`.
        let reader = ring.clone();
        let following = parley_sequencer::follow::follow(log, topic, shutdown, move |r| {
            reader.take(r.key.as_deref(), r.value.as_deref())
        })
        .await?;
        if !following.loaded(CATCH_UP).await {
            warn!(
                topic,
                "transit keys not read to their end in time; reading on"
            );
        }
        Ok(ring)
    }

    fn take(&self, key: Option<&[u8]>, value: Option<&[u8]>) {
        let Some(id) = key.and_then(|k| std::str::from_utf8(k).ok()) else {
            return;
        };
        match value {
            None => {
                self.write().remove(id);
            }
            Some(v) => match decode::<TransitKey>(v) {
                Ok(t) => match self.kek.unwrap(&t.key_id, t.kek_version as u32, &t.wrapped) {
                    Some(k) => self.insert(&t.key_id, k, t.expires_at),
                    None => {
                        warn!(key_id = %t.key_id, version = t.kek_version, "a transit key this KEK does not unwrap")
                    }
                },
                Err(e) => debug!(error = %e, "undecodable transit key skipped"),
            },
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, (ContentKey, i64)>> {
        self.keys.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a key known before the topic shows it (a gateway's own).
    pub fn insert(&self, id: &str, key: ContentKey, expires_at: i64) {
        self.write().insert(id.to_string(), (key, expires_at));
        self.changed.notify_waiters();
    }

    pub fn get(&self, id: &str) -> Option<ContentKey> {
        self.keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .map(|(k, _)| k.clone())
    }

    /// The ids of the keys expired at `now` (ms since the epoch), whoever made them.
    pub fn expired(&self, now: i64) -> Vec<String> {
        self.keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, (_, exp))| *exp <= now)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Forgets `id` at once (its tombstone is written).
    pub fn forget(&self, id: &str) {
        self.write().remove(id);
    }

    /// The key `id`, waiting up to `timeout` for the topic to show it.
    pub async fn wait_for(&self, id: &str, timeout: Duration) -> Option<ContentKey> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.changed.notified();
            if let Some(k) = self.get(id) {
                return Some(k);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return None;
            }
        }
    }

    /// Opens a sealed message or edit in place, through the transit key its record
    /// names (waiting up to `timeout` for it): its text, and a message's files' names.
    /// A plain one stays as it is. False: it does not open (no transit key, or one
    /// erased); its body is then empty.
    pub async fn open<R: SealedBody>(&self, r: &mut R, timeout: Duration) -> bool {
        let transit = match r.sealed().and_then(|s| s.transit_key.clone()) {
            Some(id) => self.wait_for(&id, timeout).await,
            None => None,
        };
        open_with(r, transit)
    }

    /// [`TransitRing::open`] without waiting.
    pub fn open_now<R: SealedBody>(&self, r: &mut R) -> bool {
        let transit = r.sealed().and_then(|s| self.get(s.transit_key.as_deref()?));
        open_with(r, transit)
    }
}

/// Opens `r` in place with the transit key its record names, if at hand.
fn open_with<R: SealedBody>(r: &mut R, transit: Option<ContentKey>) -> bool {
    let key = match (r.sealed(), transit) {
        (Some(sealed), Some(t)) => sealed.via_transit(&t),
        _ => None,
    };
    r.open_with(key.as_ref())
}
