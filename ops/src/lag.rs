//! Consumer lag: how far each partition a role consumes is behind the end of the log,
//! as the gauge `parley_consumer_lag{role,topic,partition}` and as a readiness check.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use parley_sequencer::EventLog;
use tokio_util::sync::CancellationToken;

use crate::metrics::CONSUMER_LAG;
use crate::Health;

/// The next offset a consumer reads, per topic and partition: updated by the consumer,
/// read by [`watch`].
#[derive(Clone, Default)]
pub struct Positions(Arc<Mutex<BTreeMap<(String, i32), i64>>>);

impl Positions {
    /// The consumer has everything of `topic`/`partition` before `next`.
    pub fn at(&self, topic: &str, partition: i32, next: i64) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match map.get_mut(&(topic.to_string(), partition)) {
            Some(at) => *at = (*at).max(next),
            None => {
                map.insert((topic.to_string(), partition), next);
            }
        }
    }

    /// The consumer no longer reads these partitions (revoked).
    pub fn forget(&self, topic: &str, partitions: &[i32]) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for p in partitions {
            map.remove(&(topic.to_string(), *p));
        }
    }

    fn snapshot(&self) -> BTreeMap<(String, i32), i64> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// What [`watch`] reports as.
#[derive(Clone, Debug)]
pub struct LagCheck {
    /// `role` label of the gauge.
    pub role: &'static str,
    /// Name of the readiness check: it passes while every partition is within `bound`.
    pub check: &'static str,
    /// Records behind the end that still count as caught up.
    pub bound: i64,
    pub every: Duration,
}

/// The largest lag of `positions` now, setting the gauges; `Err` if the log could not
/// say where its partitions end.
pub async fn measure(
    log: &dyn EventLog,
    role: &'static str,
    positions: &Positions,
    shown: &mut BTreeSet<(String, i32)>,
) -> parley_sequencer::Result<i64> {
    let now = positions.snapshot();
    let topics: BTreeSet<&String> = now.keys().map(|(t, _)| t).collect();
    let mut ends = BTreeMap::new();
    for t in topics {
        ends.insert(t.clone(), log.end_offsets(t).await?);
    }
    let mut max = 0;
    let mut seen = BTreeSet::new();
    for ((topic, p), next) in &now {
        let end = ends
            .get(topic)
            .and_then(|e| e.get(*p as usize))
            .copied()
            .unwrap_or(*next);
        let lag = (end - next).max(0);
        max = max.max(lag);
        metrics::gauge!(CONSUMER_LAG, "role" => role, "topic" => topic.clone(), "partition" => p.to_string())
            .set(lag as f64);
        seen.insert((topic.clone(), *p));
    }
    // Partitions no longer consumed here show no lag here.
    for (topic, p) in shown.difference(&seen) {
        metrics::gauge!(CONSUMER_LAG, "role" => role, "topic" => topic.clone(), "partition" => p.to_string())
            .set(0.0);
    }
    *shown = seen;
    Ok(max)
}

/// Measures lag every `check.every` until `shutdown`, reporting the checks `log` (the
/// log answers) and `check.check` (every partition within the bound).
pub async fn watch(
    log: Arc<dyn EventLog>,
    positions: Positions,
    check: LagCheck,
    health: Health,
    shutdown: CancellationToken,
) {
    health.set(check.check, false, "starting");
    let mut shown = BTreeSet::new();
    loop {
        match measure(&*log, check.role, &positions, &mut shown).await {
            Ok(max) => {
                health.set("log", true, "reachable");
                health.set(
                    check.check,
                    max <= check.bound,
                    format!("largest lag {max} records (ready within {})", check.bound),
                );
            }
            Err(e) => {
                health.set("log", false, format!("unreachable: {e}"));
                health.set(check.check, false, "unknown: the log does not answer");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(check.every) => {}
        }
    }
}

/// A fresh [`Positions`] for a consumer to update, measured by [`watch`] in a task of its
/// own until `shutdown`.
pub fn watched(
    log: Arc<dyn EventLog>,
    check: LagCheck,
    health: Health,
    shutdown: CancellationToken,
) -> Positions {
    let positions = Positions::default();
    tokio::spawn(watch(log, positions.clone(), check, health, shutdown));
    positions
}
