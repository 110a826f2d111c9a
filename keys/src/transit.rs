//! Every gateway's transit keys, as the `transit-keys` topic holds them: read from its
//! start when a role starts, then followed. A tombstone takes a key out.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use parley_schemas::sealed::{ContentKey, Kek};
use parley_schemas::{decode, MessagePosted, TransitKey};
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

    /// Opens a sealed message in place, through its transit key (waiting up to
    /// `timeout` for it): its text, and its files' names. A plain message stays as it
    /// is. False: it does not open (no transit key, or one erased); its body is then
    /// empty and its files' names too.
    pub async fn open(&self, m: &mut MessagePosted, timeout: Duration) -> bool {
        let transit = match m.sealed.as_ref().and_then(|s| s.transit_key.clone()) {
            Some(id) => self.wait_for(&id, timeout).await,
            None => None,
        };
        open_with(m, transit)
    }

    /// The new text of a sealed edit, opened through its transit key (waiting up to
    /// `timeout`); a plain edit's as it is.
    pub async fn open_edit(
        &self,
        e: &parley_schemas::MessageEdited,
        timeout: Duration,
    ) -> Option<String> {
        let Some(sealed) = &e.sealed else {
            return Some(e.body.clone());
        };
        let transit = self
            .wait_for(sealed.transit_key.as_deref()?, timeout)
            .await?;
        let key = sealed.via_transit(&transit)?;
        sealed.open(&key, &e.conversation_id, &e.meta.event_id)
    }

    /// [`TransitRing::open_edit`] without waiting.
    pub fn open_edit_now(&self, e: &parley_schemas::MessageEdited) -> Option<String> {
        let Some(sealed) = &e.sealed else {
            return Some(e.body.clone());
        };
        let transit = self.get(sealed.transit_key.as_deref()?)?;
        sealed.open(
            &sealed.via_transit(&transit)?,
            &e.conversation_id,
            &e.meta.event_id,
        )
    }

    /// [`TransitRing::open`] without waiting.
    pub fn open_now(&self, m: &mut MessagePosted) -> bool {
        let transit = m
            .sealed
            .as_ref()
            .and_then(|s| self.get(s.transit_key.as_deref()?));
        open_with(m, transit)
    }
}

/// Opens `m` in place with the transit key its record names, if at hand.
fn open_with(m: &mut MessagePosted, transit: Option<ContentKey>) -> bool {
    let Some(sealed) = &m.sealed else {
        return true;
    };
    let key = transit.and_then(|t| sealed.via_transit(&t));
    let text = key
        .as_ref()
        .and_then(|k| sealed.open(k, &m.conversation_id, &m.message_id));
    match (key, text) {
        (Some(key), Some(text)) => {
            m.body = text;
            parley_schemas::open_names(&mut m.attachments, &key, &m.conversation_id, &m.message_id);
            true
        }
        _ => {
            m.body.clear();
            parley_schemas::hide_names(&mut m.attachments);
            false
        }
    }
}
