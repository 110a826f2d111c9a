//! Writes again the data key of a sealed message applied without one.
//!
//! A gateway appends a message and its data key side by side. Under a broker fault, or
//! if the gateway is killed between the two, the message can be in the log without its
//! key: its text would be unreadable for good. The record also carries the data key
//! wrapped under its gateway's transit key of the hour, which lives for hours. So a
//! projector that has applied a sealed message and still has no key for it a few
//! seconds later unwraps that copy and appends the key to `keys` itself
//! ([`crate::store::Store::keys_waiting`]). A message deleted or erased meanwhile is
//! let go instead: its key must not come back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parley_keys::TransitRing;
use parley_schemas::sealed::Kek;
use parley_schemas::{encode, now_millis, DataKey, Meta};
use parley_sequencer::partition::partition_for_key;
use parley_sequencer::EventLog;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::store::Store;

/// How long a key may be late before it is written again.
const LATE_MS: i64 = 3_000;
/// Between two attempts at one key.
const AGAIN_MS: i64 = 30_000;
/// Past this, a key whose transit key is not known is given up (it has expired).
const GIVE_UP_MS: i64 = 10 * 60_000;

pub struct Rekey {
    pub store: Store,
    pub log: Arc<dyn EventLog>,
    pub kek: Kek,
    pub ring: Arc<TransitRing>,
    pub keys_topic: String,
    pub partitions: i32,
    pub caught_up: crate::caught_up::CaughtUp,
}

impl Rekey {
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut tried: HashMap<String, i64> = HashMap::new();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            let caught_up = self.caught_up.round().await;
            if caught_up.is_empty() {
                continue;
            }
            let s = self.store.clone();
            let waiting = match tokio::task::spawn_blocking(move || s.keys_waiting(1_000)).await {
                Ok(Ok(w)) => w,
                _ => continue,
            };
            let now = now_millis();
            let mut gone = Vec::new();
            for (key_id, w) in waiting {
                if now - w.since_ms < LATE_MS
                    || tried.get(&key_id).is_some_and(|t| now - t < AGAIN_MS)
                {
                    continue;
                }
                // Only where this replica has caught up: a replica catching up (a
                // rebuild) may not have applied yet the deletion or erasure that
                // tombstoned the key, and must not bring it back.
                let p = partition_for_key(w.conversation.as_bytes(), self.partitions);
                if !caught_up.contains(&p) {
                    continue;
                }
                // Still the text the message shows? (Not deleted, erased or edited since.)
                let s = self.store.clone();
                let (c, seq) = (w.conversation.clone(), w.seq);
                let row = tokio::task::spawn_blocking(move || s.message_at(&c, seq)).await;
                let current = matches!(&row, Ok(Ok(Some(r)))
                    if !r.deleted && r.sealed.as_ref().is_some_and(|x| x.key_id == key_id));
                if !current {
                    gone.push(key_id);
                    continue;
                }
                let key = self
                    .ring
                    .get(&w.transit_key)
                    .and_then(|t| t.unwrap_key(&key_id, &w.transit_wrapped));
                let Some(key) = key else {
                    if now - w.since_ms > GIVE_UP_MS {
                        warn!(key_id = %key_id, "a sealed message's key cannot be made again: its transit key is gone; its text stays unreadable");
                        gone.push(key_id);
                    }
                    continue;
                };
                let (version, wrapped) = self.kek.wrap(&key_id, &key);
                let record = DataKey {
                    meta: Meta::new("projector"),
                    key_id: key_id.clone(),
                    owner: w.owner.clone(),
                    conversation_id: w.conversation.clone(),
                    kek_version: version as i32,
                    wrapped,
                };
                let Ok(value) = encode(&record) else { continue };
                tried.insert(key_id.clone(), now);
                match self
                    .log
                    .append_to(&self.keys_topic, p, key_id.as_bytes(), Some(&value))
                    .await
                {
                    Ok(_) => {
                        info!(key_id = %key_id, "a sealed message's missing key written again")
                    }
                    Err(e) => warn!(key_id = %key_id, error = %e, "a missing key not written yet"),
                }
            }
            tried.retain(|_, t| now - *t < 2 * AGAIN_MS);
            if !gone.is_empty() {
                let s = self.store.clone();
                let _ = tokio::task::spawn_blocking(move || s.stop_waiting(&gone)).await;
            }
        }
    }
}
