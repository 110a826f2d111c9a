//! Writes the tombstones of erased data keys: the keys of messages deleted for everyone
//! and of users erased, queued by the views as they apply those records
//! ([`crate::store::erase`]). Once a key's tombstone is in the `keys` topic, every role
//! drops the key, and compaction removes it from the broker.
//!
//! The queue is in the views' database, written in the batch that applied the record,
//! so a tombstone is written even if the projector stops first. Every replica of a
//! shard writes them: a tombstone written twice erases nothing more.

use std::sync::Arc;
use std::time::Duration;

use parley_schemas::DataKey;
use parley_sequencer::partition::partition_for_key;
use parley_sequencer::EventLog;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::store::Store;

/// Tombstones written at once.
const CHUNK: usize = 500;

pub async fn run(
    store: Store,
    log: Arc<dyn EventLog>,
    keys_topic: String,
    partitions: i32,
    shutdown: CancellationToken,
) {
    loop {
        let s = store.clone();
        let ids = match tokio::task::spawn_blocking(move || s.erase_pending(CHUNK)).await {
            Ok(Ok(ids)) => ids,
            Ok(Err(e)) => {
                warn!(error = %e, "erasure queue unreadable; trying again");
                Vec::new()
            }
            Err(_) => return,
        };
        if ids.is_empty() {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(250)) => continue,
            }
        }
        let appends = ids.iter().map(|id| {
            let conv = DataKey::conversation_of(id).unwrap_or(id);
            let p = partition_for_key(conv.as_bytes(), partitions);
            let log = log.clone();
            let topic = keys_topic.clone();
            async move { log.append_to(&topic, p, id.as_bytes(), None).await }
        });
        let results = futures::future::join_all(appends).await;
        let done: Vec<String> = ids
            .iter()
            .zip(&results)
            .filter(|(_, r)| r.is_ok())
            .map(|(id, _)| id.clone())
            .collect();
        if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
            warn!(error = %e, failed = ids.len() - done.len(), "some key tombstones not written; trying again");
        }
        if !done.is_empty() {
            info!(keys = done.len(), "data keys erased (tombstones written)");
        }
        let (s, all_done) = (store.clone(), done.len() == ids.len());
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || s.erased(&done)).await {
            warn!(error = %e, "erasure queue not updated; tombstones may be written again");
        }
        if !all_done {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}
