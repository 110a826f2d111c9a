//! The directory of projector replicas, kept in the log: every replica announces
//! `{url, partitions, applied offsets, ready}` once a second in the compacted
//! `directory` topic, keyed by its URL, and deletes its key (a tombstone) when it stops.
//! Gateways and fanout-workers follow the topic and so know, without a hand-kept list,
//! which replicas serve which partitions and how far each has applied them.
//!
//! A replica whose last announcement is older than [`STALE`] counts as gone (it
//! crashed, or it is cut off): a crash leaves no tombstone, and compaction keeps its
//! last record for good, so age, not presence, decides.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parley_sequencer::{follow, EventLog};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::error::{Error, Result};
use crate::store::Stream;

/// How often a replica announces itself.
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(1);
/// An announcement older than this is a replica that is gone.
pub const STALE: Duration = Duration::from_secs(4);
/// How long a starting reader waits to have read the directory up to its end.
const LOAD_WAIT: Duration = Duration::from_secs(10);

/// What one replica says of itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    /// Its query API, e.g. `http://10.0.0.7:8090`; also the record's key.
    pub url: String,
    /// The partitions it owns (the same numbers of `events`, `inbox` and `receipts`).
    pub partitions: Vec<i32>,
    /// Next offset to apply, per owned partition of `events`.
    pub applied: BTreeMap<i32, i64>,
    /// It has applied everything its partitions held when it started: a replica that
    /// is still catching up is asked only when no ready one is left.
    pub ready: bool,
    /// When it said so (ms since the epoch).
    pub at_ms: i64,
}

impl Announcement {
    /// It announced within [`STALE`] of `now_ms`.
    pub fn is_live(&self, now_ms: i64) -> bool {
        now_ms - self.at_ms <= STALE.as_millis() as i64
    }

    pub fn applied(&self, partition: i32) -> i64 {
        self.applied.get(&partition).copied().unwrap_or(0)
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Announces a replica until `shutdown`, then deletes its key. `applied` is the
/// projector's progress; `ready_at` the offsets that make it ready (the log's ends when
/// it started).
pub async fn announce(
    log: Arc<dyn EventLog>,
    topic: String,
    url: String,
    partitions: Vec<i32>,
    mut applied: watch::Receiver<BTreeMap<(Stream, i32), i64>>,
    ready_at: BTreeMap<(Stream, i32), i64>,
    shutdown: CancellationToken,
) {
    let reached = |now: &BTreeMap<(Stream, i32), i64>| {
        ready_at
            .iter()
            .all(|(k, end)| now.get(k).copied().unwrap_or(0) >= *end)
    };
    let mut ready = false;
    let mut tick = tokio::time::interval(ANNOUNCE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
            // Announced as ready at once, not at the next tick: readers come back to
            // a restarted replica sooner.
            changed = applied.changed(), if !ready => {
                if changed.is_err() {
                    break;
                }
                if !reached(&applied.borrow()) {
                    continue;
                }
            }
        }
        let now = applied.borrow().clone();
        if !ready && reached(&now) {
            ready = true;
            info!(%url, "caught up with the log: announced as ready");
        }
        let a = Announcement {
            url: url.clone(),
            partitions: partitions.clone(),
            applied: partitions
                .iter()
                .map(|p| (*p, now.get(&(Stream::Events, *p)).copied().unwrap_or(0)))
                .collect(),
            ready,
            at_ms: now_ms(),
        };
        let value = match serde_json::to_vec(&a) {
            Ok(v) => v,
            Err(e) => {
                warn!(error = %e, "cannot encode the announcement");
                continue;
            }
        };
        if let Err(e) = log.append(&topic, url.as_bytes(), Some(&value)).await {
            warn!(error = %e, %topic, "announcing this replica failed; trying again");
        }
    }
    // Leaving: readers stop asking at once instead of after STALE.
    let bye = log.append(&topic, url.as_bytes(), None);
    match tokio::time::timeout(Duration::from_secs(2), bye).await {
        Ok(Ok(_)) => debug!(%url, "left the directory"),
        _ => warn!(%url, "could not leave the directory; readers drop it once it is stale"),
    }
}

/// The replicas announced in the directory, kept current by a reader task.
#[derive(Clone)]
pub struct Directory {
    replicas: Arc<Mutex<HashMap<String, Announcement>>>,
}

impl Directory {
    /// Follows `topic` until `shutdown`; returns once it has read what the topic held
    /// when called (at most [`LOAD_WAIT`]), so that the first requests find replicas.
    pub async fn follow(
        log: Arc<dyn EventLog>,
        topic: &str,
        shutdown: CancellationToken,
    ) -> Result<Directory> {
        let dir = Directory {
            replicas: Arc::new(Mutex::new(HashMap::new())),
        };
        let d = dir.clone();
        let following = follow::follow(log, topic, shutdown, move |r| {
            d.apply(r.key.as_deref(), r.value.as_deref())
        })
        .await?;
        if !following.loaded(LOAD_WAIT).await {
            return Err(Error::Unavailable(format!(
                "the directory {topic} was not read to its end within {LOAD_WAIT:?}"
            )));
        }
        Ok(dir)
    }

    fn apply(&self, key: Option<&[u8]>, value: Option<&[u8]>) {
        let Some(key) = key.map(|k| String::from_utf8_lossy(k).into_owned()) else {
            return;
        };
        let mut replicas = self.replicas.lock().unwrap_or_else(|p| p.into_inner());
        match value.map(serde_json::from_slice::<Announcement>) {
            None => {
                replicas.remove(&key);
            }
            Some(Ok(a)) => {
                replicas.insert(key, a);
            }
            Some(Err(e)) => warn!(%key, error = %e, "an unreadable announcement: ignored"),
        }
    }

    /// A directory holding these announcements (tests of its readers).
    #[cfg(test)]
    pub(crate) fn of(announcements: Vec<Announcement>) -> Directory {
        let replicas = announcements
            .into_iter()
            .map(|a| (a.url.clone(), a))
            .collect();
        Directory {
            replicas: Arc::new(Mutex::new(replicas)),
        }
    }

    /// The replicas that announced themselves lately.
    pub fn live(&self) -> Vec<Announcement> {
        let now = now_ms();
        let replicas = self.replicas.lock().unwrap_or_else(|p| p.into_inner());
        replicas
            .values()
            .filter(|a| a.is_live(now))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(url: &str, at_ms: i64) -> Announcement {
        Announcement {
            url: url.into(),
            partitions: vec![0, 2],
            applied: BTreeMap::from([(0, 5), (2, 7)]),
            ready: true,
            at_ms,
        }
    }

    #[test]
    fn stale_and_deleted_replicas_are_not_live() {
        let d = Directory {
            replicas: Arc::new(Mutex::new(HashMap::new())),
        };
        let fresh = serde_json::to_vec(&ann("http://a", now_ms())).unwrap();
        let old = serde_json::to_vec(&ann("http://b", now_ms() - 60_000)).unwrap();
        d.apply(Some(b"http://a"), Some(&fresh));
        d.apply(Some(b"http://b"), Some(&old));
        d.apply(Some(b"http://c"), Some(b"not json"));
        let live = d.live();
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].url, "http://a");
        assert_eq!(live[0].applied(2), 7);
        assert_eq!(live[0].applied(1), 0);
        d.apply(Some(b"http://a"), None);
        assert!(d.live().is_empty());
    }
}
