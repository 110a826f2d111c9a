//! Taking a partition over. Routing resumes at the group's committed offset C; the
//! conversations' members and last seqs at C come from the projector's snapshot of the
//! partition (taken at its applied offset A) plus, when A < C, a scan of the log from A
//! to C. A snapshot ahead of C (A > C) is wound back to C as far as it can be (see
//! [`PartitionState::from_snapshot`]), without its last seqs (those messages then
//! say their predecessor is unknown, and clients fetch it from history). With no
//! projector, or no committed offset, the partition's state is rebuilt from the log
//! itself.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use parley_projector::Views;
use parley_schemas::decode_any;
use parley_sequencer::{EventLog, StartAt};
use tracing::{info, warn};

use crate::state::{Limits, PartitionState};

/// The state of `partition` as of offset `resume` (None: routing starts at the beginning).
pub async fn warm(
    log: &dyn EventLog,
    views: Option<&Arc<dyn Views>>,
    topic: &str,
    partition: i32,
    resume: Option<i64>,
    limits: Limits,
) -> anyhow::Result<PartitionState> {
    let Some(resume) = resume else {
        return Ok(PartitionState::new(limits));
    };
    let snapshot = match views {
        Some(v) => {
            match tokio::time::timeout(Duration::from_secs(10), v.partition_snapshot(partition))
                .await
            {
                Ok(Ok(s)) => Some(s),
                Ok(Err(e)) => {
                    warn!(partition, error = %e, "no projector snapshot; rebuilding from the log");
                    None
                }
                Err(_) => {
                    warn!(
                        partition,
                        "projector snapshot timed out; rebuilding from the log"
                    );
                    None
                }
            }
        }
        None => None,
    };
    let (mut state, scan_from) = match snapshot {
        Some(s) if s.applied <= resume => {
            let from = s.applied;
            (PartitionState::from_snapshot(s, resume, limits), from)
        }
        Some(s) => {
            info!(
                partition,
                snapshot = s.applied,
                resume,
                "snapshot ahead of the committed offset"
            );
            return Ok(PartitionState::from_snapshot(s, resume, limits));
        }
        None => (PartitionState::new(limits), 0),
    };
    if scan_from < resume {
        let mut stream = log
            .read(topic, &[(partition, StartAt::Offset(scan_from))])
            .await?;
        let mut scanned = 0u64;
        while let Some(r) = tokio::time::timeout(Duration::from_secs(30), stream.next()).await? {
            let r = r?;
            if r.offset >= resume {
                break;
            }
            if let Some(Ok(any)) = r.value.as_deref().map(decode_any) {
                state.apply(r.offset, &any);
            }
            scanned += 1;
            if r.offset + 1 >= resume {
                break;
            }
        }
        info!(
            partition,
            from = scan_from,
            to = resume,
            scanned,
            "caught up for routing"
        );
    }
    Ok(state)
}
