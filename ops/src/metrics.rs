//! The process-wide Prometheus recorder and the series Parley records.
//!
//! Roles record through the `metrics` facade; [`install`] (called by every role when it
//! starts, and idempotent) sets the recorder that [`render`] reads. Without it the
//! facade's macros do nothing, so library code records unconditionally.

use std::sync::{OnceLock, RwLock};
use std::time::Duration;

use metrics::{describe_counter, describe_gauge, describe_histogram, Counter, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// WebSocket sessions open (gateway).
pub const CONNECTIONS: &str = "parley_connections";
/// WebSocket upgrades accepted (gateway).
pub const CONNECTIONS_OPENED: &str = "parley_connections_opened_total";
/// Client frames received, by `type` (`invalid` for ones that do not parse).
pub const FRAMES_IN: &str = "parley_frames_in_total";
/// Server frames written to sockets, by `type`.
pub const FRAMES_OUT: &str = "parley_frames_out_total";
/// Sends answered, by `result` (`sent`, or the error code).
pub const SENDS: &str = "parley_sends_total";
/// Delivery and read receipts recorded, by `kind`.
pub const RECEIPTS: &str = "parley_receipts_total";
/// Time from an append's start to the broker's acknowledgement, by `topic`.
pub const APPEND_SECONDS: &str = "parley_append_seconds";
/// Records this process's readers took from the loopback (its own acknowledged appends,
/// `parley dev` on Kafka) rather than from the broker, by `topic`.
pub const LOOPBACK_RECORDS: &str = "parley_log_loopback_records_total";
/// Time from a message's append (its log timestamp) to its write to a recipient's
/// session queue (gateway).
pub const DELIVER_SECONDS: &str = "parley_deliver_latency_seconds";
/// Records behind the end of the log, by `role`, `topic` and `partition`.
pub const CONSUMER_LAG: &str = "parley_consumer_lag";
/// Inbox entries written for users who were away (fanout-worker).
pub const INBOX_WRITTEN: &str = "parley_inbox_entries_written_total";
/// Entries in an inbox when it is read (projector).
pub const INBOX_SIZE: &str = "parley_inbox_size";
/// Requests or frames refused by a rate limit, by `limit`.
pub const RATE_LIMITED: &str = "parley_rate_limited_total";
/// Frames refused because the session had too many in progress.
pub const BUSY: &str = "parley_session_busy_total";
/// RocksDB figures of the projector's store, by `property`.
pub const ROCKSDB: &str = "parley_rocksdb_bytes";
/// Resident memory of the process.
pub const RESIDENT: &str = "parley_process_resident_memory_bytes";
/// Push notifications, by `result` (push role).
pub const PUSHES: &str = "parley_push_notifications_total";
/// Records written by fanout-workers: deliveries, inbox entries, push jobs.
pub const ROUTED: &str = "parley_routed_total";
/// Sends waiting for their routed copy (gateway).
pub const ECHO_WAITERS: &str = "parley_echo_waiters";
/// Messages (re)indexed by the projector's search index.
pub const SEARCH_INDEXED: &str = "parley_search_indexed_total";
/// How long a commit of the search index took.
pub const SEARCH_COMMIT_SECONDS: &str = "parley_search_commit_seconds";
/// How long a search took in a replica (after its barrier).
pub const SEARCH_SECONDS: &str = "parley_search_seconds";
/// Sealed messages routed to a gateway that could not open them (no transit key).
pub const SEALED_NOT_OPENED: &str = "parley_sealed_not_opened_total";

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Latency buckets (seconds): 0.25 ms to 10 s.
const SECONDS: &[f64] = &[
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const SIZES: &[f64] = &[0.0, 1.0, 10.0, 100.0, 1_000.0, 10_000.0, 100_000.0];

/// Installs the process-wide recorder (once; later calls return the same handle).
/// `None` if another recorder was installed first.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
                .ok()?
                .set_buckets_for_metric(Matcher::Full(INBOX_SIZE.into()), SIZES)
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            let upkeep = handle.clone();
            // Histograms are drained on render; without a scraper they must not grow.
            let _ = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(Duration::from_secs(5));
                    upkeep.run_upkeep();
                });
            Some(handle)
        })
        .as_ref()
}

/// A series' handle, made once and kept in `cell`, for a series recorded per message.
///
/// The facade's macros look a series up by name and labels at every call (a key built,
/// hashed and found in the recorder's map): a few percent of a profile of messages
/// going through as fast as acked. The recorder is installed before the handle is made,
/// so a handle kept is never one of the facade's no-op handles.
pub fn kept<T>(cell: &'static OnceLock<T>, make: impl FnOnce() -> T) -> &'static T {
    cell.get_or_init(|| {
        install();
        make()
    })
}

/// The counters of one series, one per value of one label (a frame's type, a result),
/// each made once, as [`kept`] does for a series without labels.
pub struct CountersBy {
    name: &'static str,
    label: &'static str,
    made: RwLock<Vec<(&'static str, Counter)>>,
}

impl CountersBy {
    pub const fn new(name: &'static str, label: &'static str) -> Self {
        CountersBy {
            name,
            label,
            made: RwLock::new(Vec::new()),
        }
    }

    /// Adds `n` to the counter whose label is `value`.
    pub fn increment(&self, value: &'static str, n: u64) {
        let made = self.made.read().unwrap_or_else(|p| p.into_inner());
        if let Some((_, c)) = made.iter().find(|(v, _)| *v == value) {
            c.increment(n);
            return;
        }
        drop(made);
        install();
        let c = metrics::counter!(self.name, self.label => value);
        c.increment(n);
        let mut made = self.made.write().unwrap_or_else(|p| p.into_inner());
        if !made.iter().any(|(v, _)| *v == value) {
            made.push((value, c));
        }
    }
}

/// Every series in the Prometheus text format, with the process figures updated.
pub fn render() -> String {
    if let Some(rss) = resident_bytes() {
        metrics::gauge!(RESIDENT).set(rss as f64);
    }
    install().map(|h| h.render()).unwrap_or_default()
}

/// The resident set size of this process (Linux), in bytes.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn describe() {
    describe_gauge!(CONNECTIONS, "WebSocket sessions open");
    describe_gauge!(ECHO_WAITERS, "sends waiting for their routed copy");
    describe_counter!(CONNECTIONS_OPENED, "WebSocket sessions opened");
    describe_counter!(FRAMES_IN, "client frames received, by type");
    describe_counter!(FRAMES_OUT, "server frames written to sockets, by type");
    describe_counter!(SENDS, "sends answered, by result");
    describe_counter!(RECEIPTS, "receipts recorded, by kind");
    describe_histogram!(
        APPEND_SECONDS,
        Unit::Seconds,
        "append until the broker acknowledged it"
    );
    describe_counter!(
        LOOPBACK_RECORDS,
        "records read from this process's own acknowledged appends, not the broker"
    );
    describe_histogram!(
        DELIVER_SECONDS,
        Unit::Seconds,
        "a message's log timestamp until a recipient's session has it"
    );
    describe_gauge!(CONSUMER_LAG, "records behind the end of the log");
    describe_counter!(INBOX_WRITTEN, "inbox entries written for away users");
    describe_histogram!(INBOX_SIZE, "entries in an inbox when it is read");
    describe_counter!(RATE_LIMITED, "requests or frames refused by a rate limit");
    describe_counter!(BUSY, "frames refused: too many in progress on the session");
    describe_gauge!(ROCKSDB, Unit::Bytes, "RocksDB figures of the views");
    describe_gauge!(RESIDENT, Unit::Bytes, "resident memory of the process");
    describe_counter!(PUSHES, "push notifications, by result");
    describe_counter!(ROUTED, "records written by fanout-workers");
    describe_counter!(
        SEARCH_INDEXED,
        "messages indexed for search (again, once changed)"
    );
    describe_histogram!(
        SEARCH_COMMIT_SECONDS,
        Unit::Seconds,
        "a commit of the search index"
    );
    describe_histogram!(SEARCH_SECONDS, Unit::Seconds, "one shard's search query");
    describe_counter!(
        SEALED_NOT_OPENED,
        "sealed messages a gateway routed without their text: no transit key"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_handles_and_counters_by_label_record_into_the_recorder() {
        static KEPT: OnceLock<Counter> = OnceLock::new();
        static BY: CountersBy = CountersBy::new("parley_test_frames_total", "type");
        for _ in 0..3 {
            kept(&KEPT, || metrics::counter!("parley_test_kept_total")).increment(2);
        }
        BY.increment("send", 1);
        BY.increment("ack", 5);
        BY.increment("send", 1);
        let text = render();
        let line = |series: &str| {
            text.lines()
                .find(|l| l.starts_with(series))
                .map(|l| l.rsplit(' ').next().unwrap_or_default().to_string())
        };
        assert_eq!(line("parley_test_kept_total").as_deref(), Some("6"));
        assert_eq!(
            line("parley_test_frames_total{type=\"send\"}").as_deref(),
            Some("2")
        );
        assert_eq!(
            line("parley_test_frames_total{type=\"ack\"}").as_deref(),
            Some("5")
        );
    }
}
