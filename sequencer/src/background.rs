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

#[cfg(test)]
mod tests {
    /// The niceness in a thread's `/proc/…/stat` (field 19; after the name's closing
    /// parenthesis, fields start at the state, field 3).
    fn nice_in(stat: &str) -> i64 {
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        rest.split(' ').nth(19 - 3).unwrap().parse().unwrap()
    }

    /// The niceness of each of this process's threads named `name`.
    fn nice_of_threads(name: &str) -> Vec<i64> {
        let mut nices = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").unwrap() {
            let dir = task.unwrap().path();
            let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            if comm.trim_end() == name {
                nices.push(nice_in(&std::fs::read_to_string(dir.join("stat")).unwrap()));
            }
        }
        nices
    }

    #[test]
    fn rocksdbs_flush_thread_runs_at_the_lowest_priority() {
        let own = nice_in(&std::fs::read_to_string("/proc/thread-self/stat").unwrap());
        assert!(
            own < 19,
            "the test already runs at nice {own}: it could not tell"
        );
        super::lower_rocksdb_background_priority();
        let dir = tempfile::tempdir().unwrap();
        let db = rocksdb::DB::open_default(dir.path()).unwrap();
        db.put(b"k", b"v").unwrap();
        // A flush is a job of the high-priority pool: its thread takes the priority
        // before it runs the job, and the call returns once the job is done.
        db.flush().unwrap();
        let nices = nice_of_threads("rocksdb:high");
        assert!(!nices.is_empty(), "no rocksdb:high thread");
        assert!(
            nices.iter().all(|&n| n == 19),
            "rocksdb:high at nice {nices:?}"
        );
    }
}
