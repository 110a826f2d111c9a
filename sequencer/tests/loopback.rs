//! The loopback on the real broker of `scripts/kafka.sh start` (`PARLEY_TEST_KAFKA`): a
//! process's bulk readers and group members of an looped-back topic get its acknowledged
//! appends without waiting for their fetch, and get what other processes append from
//! the broker, all in the broker's order with nothing twice. (The conformance suite
//! runs whole against an looping log too: `kafka_loopback`.)

#[allow(dead_code)] // The conformance suite's bodies: only its helpers are used here.
mod suite;

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use parley_sequencer::kafka::LoopbackTopics;
use parley_sequencer::{
    EventLog, GroupEvent, KafkaConfig, KafkaLog, LogRecord, RecordStream, StartAt, Subscription,
};

fn bootstrap() -> String {
    std::env::var("PARLEY_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// A log that loops back every topic, whose looped readers' fetches wait up to `fetch_wait_ms`.
async fn looping(fetch_wait_ms: u32) -> KafkaLog {
    let config = KafkaConfig {
        delivery_timeout_ms: 5_000,
        loopback: LoopbackTopics::All,
        loopback_fetch_wait_ms: fetch_wait_ms,
        ..KafkaConfig::with_bootstrap(bootstrap())
    };
    KafkaLog::connect(config)
        .await
        .expect("a Kafka broker (scripts/kafka.sh start)")
}

async fn records(stream: &mut RecordStream, n: usize, within: Duration) -> Vec<LogRecord> {
    let mut out = Vec::new();
    while out.len() < n {
        let r = tokio::time::timeout(within, stream.next())
            .await
            .unwrap_or_else(|_| panic!("{} of {n} records in time", out.len()))
            .expect("the stream goes on")
            .expect("no error");
        out.push(r);
    }
    out
}

/// The member's next event, failing as `what` after `within`.
async fn event(sub: &mut Box<dyn Subscription>, within: Duration, what: &str) -> GroupEvent {
    tokio::time::timeout(within, sub.next())
        .await
        .unwrap_or_else(|_| panic!("{what} in time"))
        .expect("the membership goes on")
        .expect("no error")
}

/// Collects `n` records of the member.
async fn group_records(
    sub: &mut Box<dyn Subscription>,
    n: usize,
    within: Duration,
) -> Vec<LogRecord> {
    let mut out = Vec::new();
    while out.len() < n {
        let what = format!("{} of {n} records", out.len());
        if let GroupEvent::Record(r) = event(sub, within, &what).await {
            out.push(r);
        }
    }
    out
}

/// Waits until the member owns `partitions` partitions.
async fn assigned(sub: &mut Box<dyn Subscription>, partitions: usize) {
    let mut owned = BTreeSet::new();
    while owned.len() < partitions {
        match event(sub, Duration::from_secs(30), "an assignment").await {
            GroupEvent::Assigned(ps) => owned.extend(ps),
            GroupEvent::Revoked(ps) => ps.iter().for_each(|p| {
                owned.remove(p);
            }),
            GroupEvent::Record(r) => panic!("a record before any append: {r:?}"),
        }
    }
}

fn values(records: &[LogRecord]) -> Vec<(i32, i64, String)> {
    records
        .iter()
        .map(|r| {
            let v = String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap();
            (r.partition, r.offset, v)
        })
        .collect()
}

/// The fetches of these readers wait 30 s for 1 MiB: every record that comes within
/// 10 s came from the loopback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn this_processs_appends_reach_its_readers_without_waiting_for_a_fetch() {
    let log = looping(30_000).await;
    let topic = suite::fresh_topic(&log, 2).await;
    let mut tail = log
        .read_bulk(&topic, &[(0, StartAt::End), (1, StartAt::End)])
        .await
        .unwrap();
    let group = format!("loopback-{}", uuid::Uuid::new_v4().simple());
    let mut sub = log.subscribe(&group, &topic).await.unwrap();
    assigned(&mut sub, 2).await;
    let mut appended = Vec::new();
    for i in 0..20 {
        let value = format!("v{i}");
        let at = log
            .append_to(&topic, i % 2, b"k", Some(value.as_bytes()))
            .await
            .unwrap();
        appended.push((at.partition, at.offset, value));
    }
    appended.sort();
    let within = Duration::from_secs(10);
    let mut read = values(&records(&mut tail, 20, within).await);
    read.sort();
    assert_eq!(read, appended);
    let got = group_records(&mut sub, 20, within).await;
    let mut got = values(&got);
    got.sort();
    assert_eq!(got, appended);
    // A bulk reader from the beginning, started after the appends, takes them from the
    // loopback as well.
    let mut whole = log
        .read_bulk(&topic, &[(0, StartAt::Beginning), (1, StartAt::Beginning)])
        .await
        .unwrap();
    let mut again = values(&records(&mut whole, 20, within).await);
    again.sort();
    assert_eq!(again, appended);
}

/// Appends of another process interleave with this one's in a partition: the readers
/// fetch those (within their 300 ms wait) and hand out the broker's sequence exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_processes_appends_come_from_the_broker_in_order_and_nothing_twice() {
    let log = looping(300).await;
    let other = KafkaLog::connect(KafkaConfig::with_bootstrap(bootstrap()))
        .await
        .expect("a Kafka broker (scripts/kafka.sh start)");
    let topic = suite::fresh_topic(&log, 1).await;
    let mut tail = log.read_bulk(&topic, &[(0, StartAt::End)]).await.unwrap();
    let group = format!("loopback-{}", uuid::Uuid::new_v4().simple());
    let mut sub = log.subscribe(&group, &topic).await.unwrap();
    assigned(&mut sub, 1).await;
    let mut appended = Vec::new();
    for i in 0..40 {
        let value = format!("v{i}");
        let by: &dyn EventLog = if i % 3 == 0 { &other } else { &log };
        let at = by
            .append_to(&topic, 0, b"k", Some(value.as_bytes()))
            .await
            .unwrap();
        appended.push((0, at.offset, value));
    }
    let within = Duration::from_secs(10);
    assert_eq!(values(&records(&mut tail, 40, within).await), appended);
    let got = group_records(&mut sub, 40, within).await;
    assert_eq!(values(&got), appended);
    for stream in [&mut tail] {
        let more = tokio::time::timeout(Duration::from_millis(700), stream.next()).await;
        assert!(more.is_err(), "a record came twice: {more:?}");
    }
    let more = tokio::time::timeout(Duration::from_millis(700), sub.next()).await;
    assert!(more.is_err(), "a record came twice: {more:?}");
}
