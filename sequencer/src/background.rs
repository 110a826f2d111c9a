//! RocksDB's background threads, below the delivery path in priority.
//!
//! A memtable flush (and a compaction) is a burst of CPU: about 100 ms of it for a
//! memtable of the views at 6,000 messages/s. On two busy cores, a burst at normal
//! priority holds a core that the acks and the deliveries were waiting for: the
//! gateway's sends stalled for 40–80 ms each time RocksDB's flush thread ran (a probe
//! posting every 5 ms beside a 6,000 msgs/s load; docs/benchmarks.md). So the threads
//! of both of RocksDB's pools run at the lowest priority (nice +19 on Linux), as the
//! search index's do: they get every idle cycle, and yield when a core is wanted. A
//! flush that cannot keep up at all still ends in RocksDB's own write stall, as it
//! would at any priority.

use std::sync::Once;

/// Lowers the priority of the threads of RocksDB's default environment, which every
/// database of the process shares (the embedded log's, the views'). Idempotent; the
/// threads take it the next time they wake.
pub fn lower_rocksdb_background_priority() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| match rocksdb::Env::new() {
        Ok(mut env) => {
            env.lower_thread_pool_cpu_priority();
            env.lower_high_priority_thread_pool_cpu_priority();
        }
        Err(e) => tracing::warn!(error = %e, "cannot lower RocksDB's background priority"),
    });
}
