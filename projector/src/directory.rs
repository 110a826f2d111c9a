//! The directory of projector replicas, kept in the log: every replica announces
//! `{url, partitions, applied offsets, ready}` once a second in the compacted
//! `directory` topic, keyed by its URL, and deletes its key (a tombstone) when it stops.
//! Gateways and fanout-workers follow the topic and so know, without a hand-kept list,
//! which replicas serve which partitions and how far each has applied them.
//!
//! A replica counts as gone (it crashed, or it is cut off) when its last announcement
//! reached this reader more than [`STALE`] before the newest announcement of any
//! replica did: a crash leaves no tombstone, and compaction keeps its last record for
//! good, so age, not presence, decides. Ages are taken on the reader's own clock, when
//! an announcement arrives (never by comparing clocks across hosts), and relative to the
//! newest arrival: when the directory itself is silent (a leader election of its one
//! partition, say), nobody is judged gone for it.
//!
//! An announcement says what the replica's consumer has applied and whether it is
//! moving: `stalled_ms` is how long it has been behind the log's end without applying
//! anything (the announcer runs apart from the consumer, so it says so rather than
//! vouching for a stuck consumer). Readers pass over a stalled replica. `incarnation`
//! names the replica's data: a new one whenever its views start from nothing (a lost
//! disk, a rebuild), so that what readers knew of the old one is not taken for the new.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
    /// When it said so (ms since the epoch, on its own clock: a hint for a reader's
    /// first load only).
    pub at_ms: i64,
    /// How long its consumer has been behind the log's end of its partitions without
    /// applying anything (ms, on its own clock); 0 while it keeps up or moves.
    #[serde(default)]
    pub stalled_ms: u64,
    /// The id of its views' data, new whenever they start from nothing.
    #[serde(default)]
    pub incarnation: String,
}

/// A replica whose consumer has not moved for this long while behind is passed over.
pub const STALLED_AFTER: Duration = Duration::from_secs(2);

impl Announcement {
    /// Its consumer is stuck behind the log (see [`STALLED_AFTER`]).
    pub fn is_stalled(&self) -> bool {
        self.stalled_ms >= STALLED_AFTER.as_millis() as u64
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

/// Who announces, and what.
pub struct Announcer {
    pub log: Arc<dyn EventLog>,
    /// The directory topic.
    pub topic: String,
    /// The `events` topic, whose ends say whether the consumer is behind.
    pub events: String,
    pub url: String,
    pub incarnation: String,
    pub partitions: Vec<i32>,
    /// The projector's progress.
    pub applied: watch::Receiver<BTreeMap<(Stream, i32), i64>>,
    /// The offsets that make it ready (the log's ends when it started).
    pub ready_at: BTreeMap<(Stream, i32), i64>,
}

/// Announces a replica until `shutdown`, then deletes its key.
pub async fn announce(a: Announcer, shutdown: CancellationToken) {
    let Announcer {
        log,
        topic,
        events,
        url,
        incarnation,
        partitions,
        mut applied,
        ready_at,
    } = a;
    let reached = |now: &BTreeMap<(Stream, i32), i64>| {
        ready_at
            .iter()
            .all(|(k, end)| now.get(k).copied().unwrap_or(0) >= *end)
    };
    let mut ready = false;
    // When the consumer last moved (or was not behind), and what it had applied then.
    let mut moved = std::time::Instant::now();
    let mut last_applied: BTreeMap<i32, i64> = BTreeMap::new();
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
        let applied_now: BTreeMap<i32, i64> = partitions
            .iter()
            .map(|p| (*p, now.get(&(Stream::Events, *p)).copied().unwrap_or(0)))
            .collect();
        // Behind the log's end and not moving: stalled. A log that cannot tell its ends
        // now says nothing either way.
        let behind = match log.end_offsets(&events).await {
            Ok(ends) => partitions.iter().any(|p| {
                applied_now.get(p).copied().unwrap_or(0)
                    < ends.get(*p as usize).copied().unwrap_or(0)
            }),
            Err(_) => false,
        };
        if !behind || applied_now != last_applied {
            moved = std::time::Instant::now();
            last_applied = applied_now.clone();
        }
        let a = Announcement {
            url: url.clone(),
            partitions: partitions.clone(),
            applied: applied_now,
            ready,
            at_ms: now_ms(),
            stalled_ms: moved.elapsed().as_millis() as u64,
            incarnation: incarnation.clone(),
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

/// An announcement and when it arrived here.
struct Arrived {
    announcement: Announcement,
    at: Instant,
    /// Read in the first load: `at` is a guess from the replica's own clock.
    from_load: bool,
}

/// The replicas announced in the directory, kept current by a reader task: each with
/// when its announcement arrived here.
#[derive(Clone)]
pub struct Directory {
    replicas: Arc<Mutex<HashMap<String, Arrived>>>,
    /// The first load is read: arrivals from then on are timed on this clock alone.
    loaded: Arc<std::sync::atomic::AtomicBool>,
}

impl Directory {
    /// Follows `topic` until `shutdown`; returns once it has read what the topic held
    /// when called (at most [`LOAD_WAIT`]), so that the first requests find replicas.
    pub async fn follow(
        log: Arc<dyn EventLog>,
        topic: &str,
        shutdown: CancellationToken,
    ) -> Result<Directory> {
        let dir = Directory::empty();
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
        dir.loaded.store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(dir)
    }

    fn empty() -> Directory {
        Directory {
            replicas: Arc::new(Mutex::new(HashMap::new())),
            loaded: Arc::default(),
        }
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
                let now = Instant::now();
                // Read in the first load, an announcement may be hours old: its own
                // clock is the only hint of when it was made. Later ones arrive as made.
                let from_load = !self.loaded.load(std::sync::atomic::Ordering::Relaxed);
                let at = if from_load {
                    let age = (now_ms() - a.at_ms).max(0) as u64;
                    now.checked_sub(Duration::from_millis(age)).unwrap_or(now)
                } else {
                    now
                };
                replicas.insert(
                    key,
                    Arrived {
                        announcement: a,
                        at,
                        from_load,
                    },
                );
            }
            Some(Err(e)) => warn!(%key, error = %e, "an unreadable announcement: ignored"),
        }
    }

    /// A directory holding these announcements, arrived now (tests of its readers).
    #[cfg(test)]
    pub(crate) fn of(announcements: Vec<Announcement>) -> Directory {
        let d = Directory::empty();
        d.loaded.store(true, std::sync::atomic::Ordering::Relaxed);
        for a in announcements {
            let value = serde_json::to_vec(&a).unwrap_or_default();
            d.apply(Some(a.url.as_bytes()), Some(&value));
        }
        d
    }

    /// The replicas that announced themselves lately: within [`STALE`] of the newest
    /// announcement that arrived here (and, for one read in the first load and not
    /// renewed since, within [`STALE`] of now by its own clock).
    pub fn live(&self) -> Vec<Announcement> {
        let replicas = self.replicas.lock().unwrap_or_else(|p| p.into_inner());
        let Some(newest) = replicas.values().map(|r| r.at).max() else {
            return Vec::new();
        };
        replicas
            .values()
            .filter(|r| newest.saturating_duration_since(r.at) <= STALE)
            .filter(|r| !r.from_load || r.at.elapsed() <= STALE)
            .map(|r| r.announcement.clone())
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
            stalled_ms: 0,
            incarnation: "i1".into(),
        }
    }

    #[test]
    fn stale_and_deleted_replicas_are_not_live() {
        // Read in the first load: their own clocks say how old they are.
        let d = Directory::empty();
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

    #[test]
    fn after_the_load_ages_are_this_readers_and_relative_to_the_newest() {
        let d = Directory::empty();
        d.loaded.store(true, std::sync::atomic::Ordering::Relaxed);
        // A replica whose clock is an hour behind is live: it just announced.
        let skewed = serde_json::to_vec(&ann("http://a", now_ms() - 3_600_000)).unwrap();
        d.apply(Some(b"http://a"), Some(&skewed));
        assert_eq!(d.live().len(), 1);
        // Everyone silent (the directory is): nobody is judged gone for it.
        {
            let mut r = d.replicas.lock().unwrap();
            let a = r.get_mut("http://a").unwrap();
            a.at = Instant::now().checked_sub(Duration::from_secs(60)).unwrap();
        }
        assert_eq!(d.live().len(), 1);
        // Another replica announces: the silent one is gone.
        let b = serde_json::to_vec(&ann("http://b", now_ms())).unwrap();
        d.apply(Some(b"http://b"), Some(&b));
        let live: Vec<String> = d.live().into_iter().map(|a| a.url).collect();
        assert_eq!(live, ["http://b"]);
    }
}
