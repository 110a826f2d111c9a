//! Disappearing messages: appends `MessagesExpired` once messages' time has come.
//!
//! Every second, a projector looks at its index of disappearing messages
//! ([`Store::due`]) and, for each conversation with some due, appends one
//! `MessagesExpired` (its time: now) to `events`. Applying it (every replica, and any
//! rebuild) marks those messages deleted and queues their data keys' tombstones
//! ([`crate::store::expire`], [`crate::eraser`]). Every replica of a shard sweeps, so a
//! conversation may get one record per replica: the later ones find nothing due. A
//! replica sweeps a partition only once it has caught up there ([`CaughtUp`]), so a
//! replica catching up does not ask again for what the log already says.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use parley_schemas::{now_millis, AnyRecord, MessagesExpired, Meta};
use parley_sequencer::partition::partition_for_key;
use parley_sequencer::EventLog;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::caught_up::CaughtUp;
use crate::store::{keys, Store};

/// Between two sweeps.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// A conversation asked for is not asked for again sooner than this (its record is on
/// its way to the views).
const ASK_AGAIN_MS: i64 = 10_000;

pub async fn run(
    store: Store,
    log: Arc<dyn EventLog>,
    events_topic: String,
    partitions: i32,
    mut caught_up: CaughtUp,
    shutdown: CancellationToken,
) {
    let mut asked: HashMap<String, i64> = HashMap::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(SWEEP_EVERY) => {}
        }
        let ready = caught_up.round().await;
        if ready.is_empty() {
            continue;
        }
        let now = now_millis();
        asked.retain(|_, t| now - *t < ASK_AGAIN_MS);
        let s = store.clone();
        let swept = tokio::task::spawn_blocking(move || -> crate::error::Result<_> {
            let mut due = BTreeSet::new();
            for key in s.due(now)? {
                let Some((_, conv, _)) = keys::expiring_parts(&key) else {
                    continue;
                };
                if ready.contains(&partition_for_key(conv.as_bytes(), partitions)) {
                    due.insert(conv);
                }
            }
            Ok(due)
        })
        .await;
        let due = match swept {
            Ok(Ok(due)) => due,
            Ok(Err(e)) => {
                warn!(error = %e, "disappearing messages unreadable; trying again");
                continue;
            }
            Err(_) => return,
        };
        for conv in due {
            if asked.contains_key(&conv) {
                continue;
            }
            let record = AnyRecord::from(MessagesExpired {
                meta: Meta::new("projector"),
                conversation_id: conv.clone(),
                expired_until: now,
            });
            let Ok(value) = record.encode() else { continue };
            match log
                .append(&events_topic, conv.as_bytes(), Some(&value))
                .await
            {
                Ok(_) => {
                    debug!(conversation_id = %conv, "disappearing messages due: expired");
                    asked.insert(conv, now);
                }
                Err(e) => {
                    warn!(conversation_id = %conv, error = %e, "disappearing messages not expired yet; trying again")
                }
            }
        }
    }
}
