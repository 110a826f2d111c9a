//! The embedded log's own rules, beyond the conformance suite: its fsync policy by topic,
//! its commit delay, and the configs of topics kept from an earlier run.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::writer::{left_to_wait, pause, wait, FRUITLESS};
use super::{EmbeddedConfig, EmbeddedLog, DEFAULT_COMMIT_DELAY};
use crate::log::EventLog;
use crate::rate::{Rate, RATE_WINDOW};
use crate::topics::{TopicSpec, TopicStatus};

fn lazy(name: &str, partitions: i32) -> TopicSpec {
    let mut spec = TopicSpec::plain(name, partitions, 1);
    spec.configs
        .insert("flush.messages".into(), i64::MAX.to_string());
    spec
}

fn syncs(log: &EmbeddedLog) -> u64 {
    log.shared.syncs.load(Ordering::Relaxed)
}

fn commit_waits(log: &EmbeddedLog) -> u64 {
    log.shared.commit_waits.load(Ordering::Relaxed)
}

/// A new log in `dir` with this commit delay, and a topic "strict" of one partition
/// whose appends are synced.
async fn open_delayed(dir: &Path, delay: Duration) -> EmbeddedLog {
    let mut config = EmbeddedConfig::new(dir);
    config.commit_delay = delay;
    let log = EmbeddedLog::open(config).await.unwrap();
    log.provision(&[TopicSpec::plain("strict", 1, 1)])
        .await
        .unwrap();
    log
}

/// Opens `dir`, waiting for an earlier log of it to close (its writer thread lets go of
/// the database once every clone of that log is gone).
async fn open(dir: &Path) -> EmbeddedLog {
    for _ in 0..100 {
        if let Ok(log) = EmbeddedLog::open(EmbeddedConfig::new(dir)).await {
            return log;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{} did not open within 5 s", dir.display());
}

#[tokio::test]
async fn appends_sync_unless_their_topic_flushes_lazily() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).await;
    log.provision(&[TopicSpec::plain("strict", 1, 1), lazy("lazy", 1)])
        .await
        .unwrap();

    let before = syncs(&log);
    log.append("lazy", b"k", Some(b"a")).await.unwrap();
    log.append("lazy", b"k", Some(b"b")).await.unwrap();
    assert_eq!(syncs(&log), before, "a lazy topic's appends are not synced");
    log.append("strict", b"k", Some(b"c")).await.unwrap();
    assert_eq!(syncs(&log), before + 1, "every other append is");

    // Unsynced or not, the records are in the log, in order.
    assert_eq!(log.end_offsets("lazy").await.unwrap(), vec![2]);
    assert_eq!(log.end_offsets("strict").await.unwrap(), vec![1]);
}

#[tokio::test]
async fn a_steady_stream_of_appends_shares_fsyncs_and_a_lone_append_does_not_wait() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_delayed(dir.path(), Duration::from_millis(100)).await;

    // One append a millisecond for a second, each awaited on its own: the writer waits
    // for what the rate brings two more in (2 ms), well within the delay.
    let before = syncs(&log);
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let mut pending = Vec::new();
    for i in 0..1_000u32 {
        tick.tick().await;
        let log = log.clone();
        pending.push(tokio::spawn(async move {
            log.append("strict", b"k", Some(&i.to_be_bytes())).await
        }));
    }
    let mut offsets = Vec::new();
    for p in pending {
        offsets.push(p.await.unwrap().unwrap().offset);
    }
    assert_eq!(offsets, (0..1_000).collect::<Vec<i64>>(), "acked in order");
    let streamed = syncs(&log) - before;
    // The first rate window (100 ms) has no estimate yet; after it, about one fsync per
    // three appends. Without the delay, nearly every append has its own.
    assert!(
        streamed * 2 < 1_000,
        "{streamed} fsyncs for 1,000 appends in a steady stream"
    );

    // After a quiet spell the rate is low again: an append is written at once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = syncs(&log);
    let started = std::time::Instant::now();
    log.append("strict", b"k", Some(b"lone")).await.unwrap();
    let took = started.elapsed();
    assert_eq!(syncs(&log), before + 1);
    assert!(
        took < Duration::from_millis(100),
        "a lone append waited {took:?}"
    );
}

#[test]
fn the_wait_is_what_the_rate_needs_for_two_more_within_the_delay() {
    // A rate of `per_100ms` * 10 appends a second.
    let at = |per_100ms: usize| {
        let mut rate = Rate::new();
        rate.count(per_100ms);
        rate.roll(Instant::now() + RATE_WINDOW);
        rate
    };
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let delay = DEFAULT_COMMIT_DELAY;
    assert!(
        (ms(wait(&at(100), delay)) - 2.0).abs() < 0.01,
        "1,000/s: 2 ms"
    );
    assert!(
        (ms(wait(&at(200), delay)) - 1.0).abs() < 0.01,
        "2,000/s: 1 ms"
    );
    assert!(
        (ms(wait(&at(400), delay)) - 0.5).abs() < 0.01,
        "4,000/s: 0.5 ms"
    );
    assert_eq!(
        wait(&at(800), delay),
        Duration::from_micros(500),
        "never shorter"
    );
    assert_eq!(wait(&at(20), delay), delay, "never longer than the delay");
    assert_eq!(
        wait(&at(100), Duration::from_micros(500)),
        Duration::from_micros(500)
    );
    assert_eq!(wait(&Rate::new(), delay), delay, "no rate yet");
    assert_eq!(wait(&at(100), Duration::ZERO), Duration::ZERO, "no delay");
}

#[tokio::test]
async fn a_client_that_waits_for_each_ack_is_not_kept_waiting_by_the_delay() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_delayed(dir.path(), Duration::from_millis(2)).await;

    // One client, each append after the last one's ack, faster than one per delay: the
    // rate says more will come, but waiting gathers nothing. Without the writer giving
    // up on such waits, every other rate window would be spent waiting (tens of waits
    // each). It gives up after a few fruitless waits, for longer each time: over the
    // run, only as many give-ups as their growing pauses leave room for.
    let started = std::time::Instant::now();
    for i in 0..3_000u32 {
        log.append("strict", b"k", Some(&i.to_be_bytes()))
            .await
            .unwrap();
    }
    let took = started.elapsed();
    let waited = commit_waits(&log);
    // The k-th give-up (from 0) comes after the pauses of the k before it.
    let (mut give_ups, mut paused) = (0u32, Duration::ZERO);
    while paused <= took {
        paused += pause(give_ups);
        give_ups += 1;
    }
    let most = u64::from(FRUITLESS) * (u64::from(give_ups) + 1);
    assert!(
        waited <= most,
        "{waited} waits for 3,000 appends one after another in {took:?}: at most {most}"
    );
}

#[test]
fn each_give_up_in_a_row_pauses_twice_as_long_up_to_sixteen_windows() {
    assert_eq!(pause(0), RATE_WINDOW);
    assert_eq!(pause(1), RATE_WINDOW * 2);
    assert_eq!(pause(3), RATE_WINDOW * 8);
    assert_eq!(pause(4), RATE_WINDOW * 16);
    assert_eq!(pause(40), RATE_WINDOW * 16, "no longer than 1.6 s");
}

#[test]
fn time_spent_queued_counts_as_waiting() {
    let wait = Duration::from_millis(2);
    let now = Instant::now();
    let queued = |ago_us: u64| now - Duration::from_micros(ago_us);
    assert_eq!(left_to_wait(wait, queued(0), now), wait, "taken at once");
    assert_eq!(
        left_to_wait(wait, queued(500), now),
        Duration::from_micros(1_500),
        "queued 0.5 ms behind the last write: 1.5 ms left"
    );
    assert_eq!(
        left_to_wait(wait, queued(3_000), now),
        Duration::ZERO,
        "queued longer than the wait: no wait at all"
    );
}

#[tokio::test]
async fn a_kept_topic_adopts_the_specs_configs_but_never_its_partitions() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path()).await;
        log.provision(&[TopicSpec::plain("t", 2, 1)]).await.unwrap();
        log.append("t", b"k", Some(b"a")).await.unwrap();
    }

    // A later version's spec for the same topic: provisioning reports the difference
    // (as on Kafka); adopting takes the configs, at once and for good.
    let log = open(dir.path()).await;
    let reports = log.provision(&[lazy("t", 2)]).await.unwrap();
    assert!(matches!(reports[0].status, TopicStatus::Mismatch(_)));
    assert_eq!(log.adopt_configs(&[lazy("t", 2)]).await.unwrap(), vec!["t"]);
    assert_eq!(
        log.adopt_configs(&[lazy("t", 2)]).await.unwrap(),
        Vec::<String>::new()
    );
    let before = syncs(&log);
    log.append("t", b"k", Some(b"b")).await.unwrap();
    assert_eq!(syncs(&log), before, "the new config applies at once");
    drop(log);
    let log = open(dir.path()).await;
    let described = log.describe(&[lazy("t", 2)]).await.unwrap();
    assert_eq!(described[0].status, TopicStatus::Matches, "and is kept");
    let ends = log.end_offsets("t").await.unwrap();
    assert_eq!(ends.iter().sum::<i64>(), 2, "the records are kept");

    // Another partition count is never adopted.
    let three = TopicSpec::plain("t", 3, 1);
    assert!(log
        .adopt_configs(std::slice::from_ref(&three))
        .await
        .unwrap()
        .is_empty());
    let reports = log.provision(&[three]).await.unwrap();
    assert!(matches!(reports[0].status, TopicStatus::Mismatch(_)));
    assert_eq!(log.partition_count("t").await.unwrap(), 2);
}

#[tokio::test]
async fn the_newest_records_are_read_from_the_memtables_and_the_rest_from_the_tables() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).await;
    log.provision(&[TopicSpec::plain("t", 1, 1)]).await.unwrap();
    for v in ["a", "b", "c"] {
        log.append("t", b"k", Some(v.as_bytes())).await.unwrap();
    }
    let recent = super::read::fetch_recent(&log.shared, "t", 0, 1, 3).expect("in the memtables");
    let offsets: Vec<i64> = recent.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, vec![1, 2]);

    // Flushed to a table file: not in the memtables any more, so not read that way.
    let records = log.shared.cf(super::codec::RECORDS).unwrap();
    log.shared.db.flush_cf(records).unwrap();
    assert!(super::read::fetch_recent(&log.shared, "t", 0, 0, 3).is_none());
    log.append("t", b"k", Some(b"d")).await.unwrap();
    assert!(
        super::read::fetch_recent(&log.shared, "t", 0, 0, 4).is_none(),
        "a gap: the older records are in a table"
    );
    assert_eq!(
        super::read::fetch_recent(&log.shared, "t", 0, 3, 4).map(|r| r.len()),
        Some(1)
    );
    // And a live reader still gets every record, in order.
    let mut stream = log
        .read("t", &[(0, crate::log::StartAt::Beginning)])
        .await
        .unwrap();
    for want in 0..4 {
        use futures::StreamExt;
        let r = stream.next().await.unwrap().unwrap();
        assert_eq!(r.offset, want);
    }
}

#[tokio::test]
async fn a_partition_goes_to_its_new_owner_only_once_the_old_one_took_the_revocation() {
    use crate::log::GroupEvent;
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).await;
    log.provision(&[TopicSpec::plain("t", 4, 1)]).await.unwrap();
    let mut a = log.subscribe("g", "t").await.unwrap();
    let Some(Ok(GroupEvent::Assigned(first))) = a.next().await else {
        panic!("a is assigned every partition first");
    };
    assert_eq!(first, vec![0, 1, 2, 3]);

    // b joins: partitions 1 and 3 are b's now, but a has not taken its Revoked yet.
    let mut b = log.subscribe("g", "t").await.unwrap();
    let early = tokio::time::timeout(Duration::from_millis(300), b.next()).await;
    assert!(early.is_err(), "b got {early:?} while a still holds them");

    let Some(Ok(GroupEvent::Revoked(lost))) = a.next().await else {
        panic!("a loses partitions");
    };
    assert_eq!(lost, vec![1, 3]);
    let gained = tokio::time::timeout(Duration::from_secs(5), b.next()).await;
    let Ok(Some(Ok(GroupEvent::Assigned(gained)))) = gained else {
        panic!("b is assigned once a took its Revoked: {gained:?}");
    };
    assert_eq!(gained, vec![1, 3]);
}

/// End offsets are not stored with each batch but read off the records when the log
/// opens: they come back as they were, also for a partition that retention emptied, and
/// appends go on from them.
#[tokio::test]
async fn end_offsets_come_back_after_a_reopen_also_for_an_emptied_partition() {
    let dir = tempfile::tempdir().unwrap();
    let mut gone = TopicSpec::plain("gone", 1, 1);
    gone.configs.insert("retention.ms".into(), "0".into());
    let mut kv = TopicSpec::plain("kv", 1, 1);
    kv.configs.insert("cleanup.policy".into(), "compact".into());
    let specs = [TopicSpec::plain("t", 3, 1), gone, kv];
    {
        let log = open(dir.path()).await;
        log.provision(&specs).await.unwrap();
        for (p, n) in [(0, 3), (1, 1)] {
            for _ in 0..n {
                log.append_to("t", p, b"k", Some(b"v")).await.unwrap();
            }
        }
        for _ in 0..2 {
            log.append("gone", b"k", Some(b"v")).await.unwrap();
        }
        for v in ["a", "b"] {
            log.append("kv", b"same", Some(v.as_bytes())).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        log.maintain().unwrap();
        assert_eq!(log.start_offsets("gone").await.unwrap(), vec![2]);
    }
    let log = open(dir.path()).await;
    assert_eq!(log.end_offsets("t").await.unwrap(), vec![3, 1, 0]);
    assert_eq!(log.end_offsets("gone").await.unwrap(), vec![2]);
    assert_eq!(log.start_offsets("gone").await.unwrap(), vec![2]);
    assert_eq!(log.end_offsets("kv").await.unwrap(), vec![2]);
    assert_eq!(log.append_to("t", 0, b"k", None).await.unwrap().offset, 3);
    assert_eq!(log.append_to("t", 2, b"k", None).await.unwrap().offset, 0);
    assert_eq!(log.append("gone", b"k", None).await.unwrap().offset, 2);
}

/// Compaction drops a tombstone once `delete.retention.ms` has passed, with what it
/// deleted: the bytes of the erased value leave the files on disk (crypto-shredding
/// relies on it: an erased key must not stay readable from the log's files).
#[tokio::test]
async fn compaction_drops_old_tombstones_and_the_erased_bytes_leave_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let mut kv = TopicSpec::plain("kv", 1, 1);
    kv.configs.insert("cleanup.policy".into(), "compact".into());
    kv.configs.insert("delete.retention.ms".into(), "0".into());
    let log = open(dir.path()).await;
    log.provision(&[kv]).await.unwrap();
    let secret = b"an-erased-key-0123456789abcdef";
    log.append("kv", b"erased", Some(secret)).await.unwrap();
    log.append("kv", b"kept", Some(b"v1")).await.unwrap();
    log.append("kv", b"erased", None).await.unwrap();
    log.append("kv", b"kept", Some(b"v2")).await.unwrap();
    let on_disk = |needle: &[u8]| {
        let mut todo = vec![dir.path().to_path_buf()];
        let mut found = false;
        while let Some(p) = todo.pop() {
            if p.is_dir() {
                todo.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            } else {
                found |=
                    std::fs::read(&p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle));
            }
        }
        found
    };
    assert!(on_disk(secret), "the value is in the log's files before");
    tokio::time::sleep(Duration::from_millis(5)).await;
    log.maintain().unwrap();
    use futures::StreamExt;
    let mut stream = log
        .read("kv", &[(0, crate::StartAt::Beginning)])
        .await
        .unwrap();
    let r = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!((r.offset, r.value.as_deref()), (3, Some(&b"v2"[..])));
    assert!(
        !on_disk(secret),
        "the erased value is still in the log's files"
    );
    assert_eq!(log.end_offsets("kv").await.unwrap(), vec![4]);
}
