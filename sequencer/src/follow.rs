//! Following a whole topic: every partition from its start, then live, handed record by
//! record to the caller's state. Small compacted topics (presence, devices, the push
//! role's intents, the projector directory) are read this way by every process that
//! needs them whole.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::{EventLog, LogRecord, Result, StartAt};

/// How far a [`follow`] has read.
pub struct Following {
    /// Per partition, the next offset to read.
    next: watch::Receiver<Vec<i64>>,
    /// The end offsets when following began.
    start_ends: Vec<(i32, i64)>,
}

impl Following {
    /// Waits until every `(partition, offset)` is read up to (the record before
    /// `offset` applied); false after `timeout`.
    pub async fn reached(&self, positions: &[(i32, i64)], timeout: Duration) -> bool {
        let mut rx = self.next.clone();
        let done = |next: &Vec<i64>| {
            positions
                .iter()
                .all(|&(p, o)| next.get(p as usize).is_some_and(|&n| n >= o))
        };
        let reached = tokio::time::timeout(timeout, rx.wait_for(done)).await;
        reached.is_ok()
    }

    /// The topic's partitions.
    pub fn partitions(&self) -> i32 {
        self.start_ends.len() as i32
    }

    /// Waits until what the topic held when following began is read.
    pub async fn loaded(&self, timeout: Duration) -> bool {
        self.reached(&self.start_ends, timeout).await
    }
}

/// Reads every partition of `topic` from its start until `shutdown`, calling `apply`
/// with each record in order (per partition). A read error is logged and reading goes
/// on after a pause.
pub async fn follow(
    log: Arc<dyn EventLog>,
    topic: &str,
    shutdown: CancellationToken,
    mut apply: impl FnMut(&LogRecord) + Send + 'static,
) -> Result<Following> {
    let ends = log.end_offsets(topic).await?;
    let from: Vec<(i32, StartAt)> = (0..ends.len() as i32)
        .map(|p| (p, StartAt::Beginning))
        .collect();
    let mut records = log.read(topic, &from).await?;
    let (next_tx, next) = watch::channel(vec![0; ends.len()]);
    let name = topic.to_string();
    tokio::spawn(async move {
        loop {
            let record = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = records.next() => r,
            };
            match record {
                Some(Ok(r)) => {
                    apply(&r);
                    next_tx.send_modify(|n| {
                        if let Some(n) = n.get_mut(r.partition as usize) {
                            *n = (*n).max(r.offset + 1);
                        }
                    });
                }
                Some(Err(e)) => {
                    warn!(topic = %name, error = %e, "reading failed; reading on in a moment");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                None => return,
            }
        }
    });
    Ok(Following {
        next,
        start_ends: ends
            .into_iter()
            .enumerate()
            .map(|(p, e)| (p as i32, e))
            .collect(),
    })
}
