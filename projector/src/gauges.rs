//! What a projector reports every 2 s: consumer lag per stream and partition
//! (`parley_consumer_lag{role="projector"}`), the readiness checks `log` and
//! `caught_up`, and RocksDB figures (`parley_rocksdb_bytes{property}`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use parley_ops::lag::{measure, Positions};
use parley_sequencer::EventLog;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::ProjectorConfig;
use crate::store::{Store, Stream};

const EVERY: Duration = Duration::from_secs(2);

pub async fn watch(
    log: Arc<dyn EventLog>,
    store: Store,
    applied: watch::Receiver<BTreeMap<(Stream, i32), i64>>,
    positions: Positions,
    config: ProjectorConfig,
    shutdown: CancellationToken,
) {
    let health = config.health.clone();
    health.set("projector_caught_up", false, "starting");
    let mut shown = BTreeSet::new();
    loop {
        let now: Vec<((Stream, i32), i64)> =
            applied.borrow().iter().map(|(k, v)| (*k, *v)).collect();
        for ((stream, p), at) in now {
            positions.at(config.topic_of(stream), p, at);
        }
        let measured = tokio::select! {
            _ = shutdown.cancelled() => return,
            m = measure(&*log, "projector", &positions, &mut shown) => m,
        };
        match measured {
            Ok(max) => {
                health.set("log", true, "reachable");
                health.set(
                    "projector_caught_up",
                    max <= config.ready_lag,
                    format!(
                        "largest lag {max} records (ready within {})",
                        config.ready_lag
                    ),
                );
            }
            Err(e) => {
                health.set("log", false, format!("unreachable: {e}"));
                health.set(
                    "projector_caught_up",
                    false,
                    "unknown: the log does not answer",
                );
            }
        }
        let s = store.clone();
        if let Ok(figures) = tokio::task::spawn_blocking(move || s.figures()).await {
            for (property, bytes) in figures {
                metrics::gauge!(parley_ops::metrics::ROCKSDB, "property" => property)
                    .set(bytes as f64);
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(EVERY) => {}
        }
    }
}
