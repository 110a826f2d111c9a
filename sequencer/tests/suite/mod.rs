//! The conformance suite of [`EventLog`]: one set of test bodies, run against every
//! backend. A backend passes when each body passes against it.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use parley_sequencer::partition::partition_for_key;
use parley_sequencer::{EventLog, LogRecord, StartAt, TopicSpec};

/// A topic of this test run only, so that tests neither see nor disturb each other.
pub async fn fresh_topic(log: &dyn EventLog, partitions: i32) -> String {
    let name = format!("conformance-{}", uuid::Uuid::new_v4().simple());
    let reports = log
        .provision(&[TopicSpec::plain(&name, partitions, 1)])
        .await
        .expect("provisioning a test topic");
    assert!(reports[0].is_ok(), "{:?}", reports[0]);
    name
}

/// Reads exactly `n` records from `from`, failing after a generous bound.
pub async fn read_n(
    log: &dyn EventLog,
    topic: &str,
    from: &[(i32, StartAt)],
    n: usize,
) -> Vec<LogRecord> {
    let stream = log.read(topic, from).await.expect("read");
    collect_n(stream, n).await
}

/// Takes exactly `n` records off `stream`, failing after a generous bound.
async fn collect_n(mut stream: parley_sequencer::RecordStream, n: usize) -> Vec<LogRecord> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match tokio::time::timeout(Duration::from_secs(20), stream.next()).await {
            Ok(Some(Ok(r))) => out.push(r),
            Ok(Some(Err(e))) => panic!("read error after {} records: {e}", out.len()),
            Ok(None) => panic!("stream ended after {} of {n} records", out.len()),
            Err(_) => panic!("timed out after {} of {n} records", out.len()),
        }
    }
    out
}

fn value_of(r: &LogRecord) -> String {
    String::from_utf8(r.value.clone().expect("a value").to_vec()).unwrap()
}

/// Records of one key come back in the order they were appended, even when appends of
/// many keys are in flight at once.
pub async fn per_key_order(log: &dyn EventLog) {
    let topic = fresh_topic(log, 4).await;
    let keys: Vec<String> = (0..8).map(|k| format!("conversation-{k}")).collect();
    let per_key = 50;
    let appends = (0..per_key).flat_map(|i| keys.iter().map(move |k| (k.clone(), i)));
    let positions = futures::future::join_all(appends.map(|(k, i)| {
        let topic = topic.clone();
        async move {
            let v = format!("{k}:{i}");
            let pos = log
                .append(&topic, k.as_bytes(), Some(v.as_bytes()))
                .await
                .expect("append");
            (k, i, pos)
        }
    }))
    .await;

    // Acked positions: per key, offsets rise with the append order.
    let mut by_key: BTreeMap<&str, Vec<(usize, i64, i32)>> = BTreeMap::new();
    for (k, i, pos) in &positions {
        by_key
            .entry(k.as_str())
            .or_default()
            .push((*i, pos.offset, pos.partition));
    }
    for (k, mut v) in by_key {
        v.sort();
        assert!(
            v.windows(2).all(|w| w[0].1 < w[1].1),
            "offsets of {k} not rising: {v:?}"
        );
        assert!(
            v.iter().all(|x| x.2 == v[0].2),
            "{k} spread over partitions"
        );
    }

    // Read back: per key, values in append order.
    let from: Vec<(i32, StartAt)> = (0..4).map(|p| (p, StartAt::Beginning)).collect();
    let records = read_n(log, &topic, &from, keys.len() * per_key).await;
    let mut seen: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for r in &records {
        let v = value_of(r);
        let (k, i) = v.rsplit_once(':').unwrap();
        seen.entry(k.to_string())
            .or_default()
            .push(i.parse().unwrap());
    }
    for k in &keys {
        assert_eq!(seen[k], (0..per_key).collect::<Vec<_>>(), "order of {k}");
    }
}

/// A bulk reader ([`EventLog::read_bulk`]) gets every record, per partition in offset
/// order, the same as [`EventLog::read`]; and, from the end, everything appended after.
pub async fn bulk_reads_get_every_record_in_order(log: &dyn EventLog) {
    let topic = fresh_topic(log, 3).await;
    let from_end: Vec<(i32, StartAt)> = (0..3).map(|p| (p, StartAt::End)).collect();
    let tail = log.read_bulk(&topic, &from_end).await.expect("read_bulk");
    let mut appended: BTreeMap<i32, Vec<(i64, String)>> = BTreeMap::new();
    for i in 0..300 {
        let key = format!("conversation-{}", i % 7);
        let value = format!("{key}:{i}");
        let pos = log
            .append(&topic, key.as_bytes(), Some(value.as_bytes()))
            .await
            .expect("append");
        appended
            .entry(pos.partition)
            .or_default()
            .push((pos.offset, value));
    }
    let from: Vec<(i32, StartAt)> = (0..3).map(|p| (p, StartAt::Beginning)).collect();
    let whole = log.read_bulk(&topic, &from).await.expect("read_bulk");
    for records in [collect_n(whole, 300).await, collect_n(tail, 300).await] {
        let mut read: BTreeMap<i32, Vec<(i64, String)>> = BTreeMap::new();
        for r in &records {
            read.entry(r.partition)
                .or_default()
                .push((r.offset, value_of(r)));
        }
        assert_eq!(read, appended);
    }
}

/// Offsets are strictly increasing within a partition, in the order appends are confirmed.
pub async fn offsets_strictly_increase(log: &dyn EventLog) {
    let topic = fresh_topic(log, 2).await;
    let mut last: BTreeMap<i32, i64> = BTreeMap::new();
    for i in 0..60 {
        let key = format!("k{}", i % 5);
        let pos = log
            .append(&topic, key.as_bytes(), Some(b"x"))
            .await
            .expect("append");
        if let Some(prev) = last.insert(pos.partition, pos.offset) {
            assert!(
                pos.offset > prev,
                "offset {} after {prev} in partition {}",
                pos.offset,
                pos.partition
            );
        }
    }
    let from: Vec<(i32, StartAt)> = (0..2).map(|p| (p, StartAt::Beginning)).collect();
    let records = read_n(log, &topic, &from, 60).await;
    let mut prev: BTreeMap<i32, i64> = BTreeMap::new();
    for r in records {
        if let Some(p) = prev.insert(r.partition, r.offset) {
            assert!(r.offset > p, "read offset {} after {p}", r.offset);
        }
    }
}

/// A returned position means the record is in the log: its end offset is past it and a
/// reader finds it there, at once. An append that cannot be persisted is an error.
pub async fn append_returns_only_after_the_log_has_it(log: &dyn EventLog) {
    let topic = fresh_topic(log, 3).await;
    for i in 0..20 {
        let value = format!("durable-{i}");
        let pos = log
            .append(&topic, b"key", Some(value.as_bytes()))
            .await
            .expect("append");
        let ends = log.end_offsets(&topic).await.expect("end offsets");
        assert!(
            ends[pos.partition as usize] > pos.offset,
            "end {:?} not past {pos:?}",
            ends
        );
        let got = read_n(
            log,
            &topic,
            &[(pos.partition, StartAt::Offset(pos.offset))],
            1,
        )
        .await;
        assert_eq!((got[0].offset, value_of(&got[0])), (pos.offset, value));
    }

    let missing = format!("no-such-topic-{}", uuid::Uuid::new_v4().simple());
    let err = log
        .append(&missing, b"k", Some(b"v"))
        .await
        .expect_err("append to a missing topic");
    assert!(!err.to_string().is_empty());
    let err = log
        .append_to(&topic, 99, b"k", Some(b"v"))
        .await
        .expect_err("append to a missing partition");
    assert!(!err.to_string().is_empty());
}

/// Reading from an offset gives exactly the records from there on; end offsets count them.
pub async fn read_from_offset_and_end_offsets(log: &dyn EventLog) {
    let topic = fresh_topic(log, 2).await;
    assert_eq!(log.partition_count(&topic).await.unwrap(), 2);
    assert_eq!(log.end_offsets(&topic).await.unwrap(), vec![0, 0]);

    let mut offsets = Vec::new();
    for i in 0..10 {
        let pos = log
            .append_to(&topic, 1, b"k", Some(format!("v{i}").as_bytes()))
            .await
            .unwrap();
        assert_eq!(pos.partition, 1);
        offsets.push(pos.offset);
    }
    let ends = log.end_offsets(&topic).await.unwrap();
    assert_eq!(ends[0], 0);
    assert_eq!(ends[1], offsets[9] + 1);

    let from_mid = read_n(log, &topic, &[(1, StartAt::Offset(offsets[4]))], 6).await;
    let values: Vec<String> = from_mid.iter().map(value_of).collect();
    assert_eq!(values, (4..10).map(|i| format!("v{i}")).collect::<Vec<_>>());
    assert_eq!(from_mid[0].offset, offsets[4]);

    let all = read_n(log, &topic, &[(1, StartAt::Beginning)], 10).await;
    assert_eq!(all[0].offset, offsets[0]);
    assert!(all
        .iter()
        .all(|r| r.topic == topic && r.partition == 1 && r.timestamp_ms.is_some()));
    assert_eq!(all[3].key.as_deref(), Some(&b"k"[..]));

    // From the end: only what is appended after the reader started.
    let mut tail = log.read(&topic, &[(1, StartAt::End)]).await.unwrap();
    // Give the reader a moment to position itself at the end before appending.
    let early = tokio::time::timeout(Duration::from_millis(1500), tail.next()).await;
    assert!(
        early.is_err(),
        "a reader from the end saw an old record: {early:?}"
    );
    let pos = log
        .append_to(&topic, 1, b"k", Some(b"after"))
        .await
        .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(20), tail.next())
        .await
        .expect("the new record arrives")
        .unwrap()
        .unwrap();
    assert_eq!(
        (next.offset, value_of(&next)),
        (pos.offset, "after".to_string())
    );
}

/// A keyed record lands where Kafka's Java default partitioner puts that key.
pub async fn key_partition_matches_kafka_java(log: &dyn EventLog) {
    let topic = fresh_topic(log, 16).await;
    // Kafka's own UtilsTest vectors, plus conversation-like keys.
    let mut keys: Vec<String> = ["21", "foobar", "a-little-bit-long-string", "abc"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    keys.extend((0..40).map(|i| format!("{}", uuid::Uuid::from_u128(i * 7919 + 1))));
    for key in &keys {
        let pos = log
            .append(&topic, key.as_bytes(), Some(b"v"))
            .await
            .unwrap();
        assert_eq!(
            pos.partition,
            partition_for_key(key.as_bytes(), 16),
            "key {key}"
        );
    }
    // toPositive(murmur2("21")) % 16, computed with Kafka's published hash -973932308.
    assert_eq!(partition_for_key(b"21", 16), 12);
}

/// A record without a value (a tombstone) reads back as one.
pub async fn tombstones_read_back_as_none(log: &dyn EventLog) {
    let topic = fresh_topic(log, 1).await;
    log.append(&topic, b"user/1", Some(b"online"))
        .await
        .unwrap();
    let pos = log.append(&topic, b"user/1", None).await.unwrap();
    let got = read_n(log, &topic, &[(0, StartAt::Beginning)], 2).await;
    assert_eq!(got[1].offset, pos.offset);
    assert_eq!(got[1].value, None);
    assert_eq!(got[1].key.as_deref(), Some(&b"user/1"[..]));
}

/// Provisioning creates what is missing, changes nothing the second time, and reports a
/// topic that differs from its spec.
pub async fn provisioning_is_idempotent_and_reports_mismatches(log: &dyn EventLog) {
    use parley_sequencer::{TopicSettings, TopicStatus};
    let settings = TopicSettings {
        prefix: format!("conf-{}.", uuid::Uuid::new_v4().simple()),
        partitions: 3,
        gateway_slots: 4,
        ..Default::default()
    };
    let spec = settings.spec();
    let first = log.provision(&spec).await.unwrap();
    assert!(
        first.iter().all(|r| r.status == TopicStatus::Created),
        "{first:?}"
    );
    let second = log.provision(&spec).await.unwrap();
    assert!(
        second.iter().all(|r| r.status == TopicStatus::Matches),
        "{second:?}"
    );

    let mut wrong = spec.clone();
    wrong[0].partitions = 5;
    wrong[1]
        .configs
        .insert("retention.ms".into(), "12345".into());
    let third = log.provision(&wrong).await.unwrap();
    let TopicStatus::Mismatch(p) = &third[0].status else {
        panic!("partition count mismatch not reported: {:?}", third[0])
    };
    assert!(p[0].contains("3 partitions"), "{p:?}");
    assert!(matches!(&third[1].status, TopicStatus::Mismatch(p) if p[0].contains("retention.ms")));
    // Reporting changed nothing.
    assert_eq!(log.partition_count(&spec[0].name).await.unwrap(), 3);
}

/// Collects group events until `n` records have arrived; checks that each record's
/// partition was assigned (and not since revoked) before it arrived.
pub async fn group_records(
    sub: &mut Box<dyn parley_sequencer::Subscription>,
    n: usize,
) -> Vec<LogRecord> {
    use parley_sequencer::GroupEvent;
    let mut owned = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    while out.len() < n {
        let ev = tokio::time::timeout(Duration::from_secs(30), sub.next())
            .await
            .unwrap_or_else(|_| panic!("timed out after {} of {n} records", out.len()))
            .expect("subscription open")
            .expect("no error");
        match ev {
            GroupEvent::Assigned(ps) => owned.extend(ps),
            GroupEvent::Revoked(ps) => ps.iter().for_each(|p| {
                owned.remove(p);
            }),
            GroupEvent::Record(r) => {
                assert!(
                    owned.contains(&r.partition),
                    "record of unassigned partition {}",
                    r.partition
                );
                out.push(r);
            }
        }
    }
    out
}

/// A group member gets every record; a later member of the same group resumes after
/// what was committed.
pub async fn group_resumes_from_committed_offsets(log: &dyn EventLog) {
    let topic = fresh_topic(log, 3).await;
    let group = format!("group-{}", uuid::Uuid::new_v4().simple());
    for i in 0..30 {
        log.append(
            &topic,
            format!("k{i}").as_bytes(),
            Some(format!("first-{i}").as_bytes()),
        )
        .await
        .unwrap();
    }
    let mut sub = log.subscribe(&group, &topic).await.unwrap();
    let got = group_records(&mut sub, 30).await;
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    for r in &got {
        assert!(value_of(r).starts_with("first-"));
        let e = next.entry(r.partition).or_default();
        *e = (*e).max(r.offset + 1);
    }
    let offsets: Vec<(i32, i64)> = next.clone().into_iter().collect();
    sub.commit(&offsets).unwrap();
    let parts: Vec<i32> = (0..3).collect();
    // Async commit: wait until the group coordinator reports it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let committed = sub.committed(&parts).await.unwrap();
        let ok = committed
            .iter()
            .all(|(p, o)| next.get(p).is_none_or(|n| *o == Some(*n)));
        if ok {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "commit not visible: {committed:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(sub);

    for i in 0..10 {
        log.append(
            &topic,
            format!("k{i}").as_bytes(),
            Some(format!("second-{i}").as_bytes()),
        )
        .await
        .unwrap();
    }
    let mut sub = log.subscribe(&group, &topic).await.unwrap();
    let got = group_records(&mut sub, 10).await;
    for r in &got {
        assert!(
            value_of(r).starts_with("second-"),
            "replayed a committed record: {}",
            value_of(r)
        );
    }
}

/// Two members of one group split the partitions; together they see every record.
pub async fn group_members_share_partitions(log: &dyn EventLog) {
    use parley_sequencer::GroupEvent;
    let topic = fresh_topic(log, 4).await;
    let group = format!("group-{}", uuid::Uuid::new_v4().simple());
    let mut a = log.subscribe(&group, &topic).await.unwrap();
    let mut b = log.subscribe(&group, &topic).await.unwrap();
    // Wait until the partitions are spread over both members, each partition owned by
    // one. Each member's events come on its own stream: one member's assignment can be
    // read here before the other's revocation that came first, so a moment of overlap
    // in what this loop has read is not a double owner; the split must settle.
    let (mut owned_a, mut owned_b) = (
        std::collections::BTreeSet::new(),
        std::collections::BTreeSet::new(),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while owned_a.len() + owned_b.len() < 4
        || owned_a.is_empty()
        || owned_b.is_empty()
        || !owned_a.is_disjoint(&owned_b)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the partitions did not settle, each with one of the two members: {owned_a:?} {owned_b:?}"
        );
        tokio::select! {
            Some(Ok(ev)) = a.next() => match ev {
                GroupEvent::Assigned(ps) => owned_a.extend(ps),
                GroupEvent::Revoked(ps) => ps.iter().for_each(|p| { owned_a.remove(p); }),
                GroupEvent::Record(_) => {}
            },
            Some(Ok(ev)) = b.next() => match ev {
                GroupEvent::Assigned(ps) => owned_b.extend(ps),
                GroupEvent::Revoked(ps) => ps.iter().for_each(|p| { owned_b.remove(p); }),
                GroupEvent::Record(_) => {}
            },
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    let mut expected = std::collections::BTreeSet::new();
    for i in 0..40 {
        let pos = log
            .append(&topic, format!("k{i}").as_bytes(), Some(b"v"))
            .await
            .unwrap();
        expected.insert((pos.partition, pos.offset));
    }
    let mut seen = std::collections::BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while seen.len() < expected.len() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "saw {} of {}",
            seen.len(),
            expected.len()
        );
        tokio::select! {
            Some(Ok(GroupEvent::Record(r))) = a.next() => {
                assert!(owned_a.contains(&r.partition));
                seen.insert((r.partition, r.offset));
            }
            Some(Ok(GroupEvent::Record(r))) = b.next() => {
                assert!(owned_b.contains(&r.partition));
                seen.insert((r.partition, r.offset));
            }
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    assert_eq!(seen, expected);
}

/// Appends started one after another keep that order in their partition, however
/// their futures are then awaited (the fanout-worker relies on it for each slot).
pub async fn started_appends_keep_their_order(log: &dyn EventLog) {
    let topic = fresh_topic(log, 2).await;
    let mut started = Vec::new();
    for i in 0..200 {
        let p = i % 2;
        let v = format!("{i}");
        let appending = match log.start_append(&topic, Some(p), b"k", Some(v.as_bytes())) {
            Some(a) => a,
            // A backend that cannot start appends waits for each: order holds too.
            None => Box::pin(std::future::ready(
                log.append_at(&topic, Some(p), b"k", Some(v.as_bytes()))
                    .await,
            )),
        };
        started.push((p, i, appending));
    }
    // Awaited in reverse: the order was fixed when they started.
    let mut positions = Vec::new();
    while let Some((p, i, a)) = started.pop() {
        let pos = a.await.expect("append");
        assert_eq!(pos.partition, p);
        positions.push((i, pos.offset));
    }
    positions.sort_unstable();
    for p in 0..2i32 {
        let offsets: Vec<i64> = positions
            .iter()
            .filter(|(i, _)| i % 2 == p)
            .map(|(_, o)| *o)
            .collect();
        assert!(
            offsets.windows(2).all(|w| w[0] < w[1]),
            "partition {p}: offsets follow the start order: {offsets:?}"
        );
    }
    let back = read_n(log, &topic, &[(0, StartAt::Beginning)], 100).await;
    let values: Vec<String> = back.iter().map(value_of).collect();
    let want: Vec<String> = (0..200).step_by(2).map(|i| i.to_string()).collect();
    assert_eq!(values, want);
}

/// Start offsets: 0 for a fresh partition, and never past the end.
pub async fn start_offsets_are_the_oldest_retained(log: &dyn EventLog) {
    let topic = fresh_topic(log, 2).await;
    assert_eq!(log.start_offsets(&topic).await.unwrap(), vec![0, 0]);
    log.append_to(&topic, 1, b"k", Some(b"v")).await.unwrap();
    let starts = log.start_offsets(&topic).await.unwrap();
    let ends = log.end_offsets(&topic).await.unwrap();
    assert_eq!(starts, vec![0, 0]);
    assert_eq!(ends, vec![0, 1]);
    assert!(log.broker_count().await.unwrap() >= 1);

    // A topic that does not exist has no offsets: an error naming it, not zeros.
    let missing = format!("no-such-topic-{}", uuid::Uuid::new_v4().simple());
    for err in [
        log.start_offsets(&missing)
            .await
            .expect_err("start offsets"),
        log.end_offsets(&missing).await.expect_err("end offsets"),
    ] {
        assert!(err.to_string().contains(&missing), "{err}");
    }
}

/// A lease taken a second time passes to the newer holder; the older one learns it
/// lost the lease, the newer one keeps it.
pub async fn a_newer_lease_holder_fences_the_older(log: &dyn EventLog) {
    let topic = fresh_topic(log, 1).await;
    let name = format!("lease-{}", uuid::Uuid::new_v4().simple());
    let mut first = log.lease(&name, &topic).await.expect("lease");
    // The first holder joins before the second comes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut second = log.lease(&name, &topic).await.expect("lease again");
    let why = tokio::time::timeout(Duration::from_secs(30), first.lost())
        .await
        .expect("the older holder is fenced within 30 s");
    assert!(!why.is_empty());
    assert!(
        tokio::time::timeout(Duration::from_secs(5), second.lost())
            .await
            .is_err(),
        "the newer holder keeps the lease"
    );
}

/// Instantiates every body of the suite as `#[tokio::test]`s against one backend.
#[macro_export]
macro_rules! conformance_suite {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use super::*;
            $crate::conformance_suite!(@case $make, per_key_order, offsets_strictly_increase,
                append_returns_only_after_the_log_has_it, read_from_offset_and_end_offsets,
                key_partition_matches_kafka_java, tombstones_read_back_as_none,
                provisioning_is_idempotent_and_reports_mismatches,
                group_resumes_from_committed_offsets, group_members_share_partitions,
                started_appends_keep_their_order, start_offsets_are_the_oldest_retained,
                a_newer_lease_holder_fences_the_older, bulk_reads_get_every_record_in_order);
        }
    };
    (@case $make:expr, $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let log = $make.await;
                conformance::$case(&log).await;
            }
        )*
    };
}
