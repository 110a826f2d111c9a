//! `parley replay` prints decodable JSON for records that another producer wrote with the
//! schemas: here a plain rdkafka producer writes records encoded by Python's fastavro and
//! by the schemas crate, and `parley replay` (the real binary) reads them back.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use parley_sequencer::{EventLog, KafkaConfig, KafkaLog, TopicSpec};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

fn fastavro_records() -> Vec<Vec<u8>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    let out = std::process::Command::new("python3")
        .arg(root.join("interop/fastavro_check.py"))
        .arg(root.join("avro"))
        .arg(root.join("tests/golden/records.hex"))
        .output()
        .expect("python3 with fastavro (python3 -m pip install fastavro)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|j| j["kind"] == "record")
        .map(|j| {
            let hex = j["fresh"].as_str().unwrap().to_string();
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect()
        })
        .collect()
}

async fn produce(topic: &str, records: &[(String, Option<Vec<u8>>)]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", common::bootstrap())
        .set("acks", "all")
        .create()
        .unwrap();
    // Issued in order (one partition keeps it), awaited together.
    let sends = records.iter().map(|(key, value)| {
        let mut r: FutureRecord<'_, str, [u8]> = FutureRecord::to(topic).key(key.as_str());
        if let Some(v) = value {
            r = r.payload(v.as_slice());
        }
        producer.send(r, Duration::from_secs(10))
    });
    for result in futures::future::join_all(sends).await {
        result.map_err(|(e, _)| e).unwrap();
    }
}

async fn make_topic(partitions: i32) -> String {
    let log = KafkaLog::connect(KafkaConfig::with_bootstrap(common::bootstrap()))
        .await
        .unwrap();
    let name = format!("{}replay", common::fresh_prefix("replay"));
    let r = log
        .provision(&[TopicSpec::plain(&name, partitions, 1)])
        .await
        .unwrap();
    assert!(r[0].is_ok());
    name
}

fn replay(topic: &str, extra: &[&str]) -> (Vec<serde_json::Value>, String) {
    let out = common::parley()
        .args(["replay", "--topic", topic, "--log", &common::log_url()])
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "replay failed: {stderr}");
    let lines = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    (lines, stderr)
}

#[tokio::test]
async fn replay_decodes_records_written_by_other_producers() {
    let topic = make_topic(3).await;
    let mut records: Vec<(String, Option<Vec<u8>>)> = fastavro_records()
        .into_iter()
        .enumerate()
        .map(|(i, b)| (format!("key-{i}"), Some(b)))
        .collect();
    let kinds = parley_schemas::registry::all().len();
    assert_eq!(records.len(), kinds, "one fastavro record per schema");
    for r in parley_schemas::samples::one_of_each() {
        records.push(("sample".into(), Some(r.encode().unwrap())));
    }
    records.push(("garbage".into(), Some(b"not avro at all".to_vec())));
    records.push(("user/1".into(), None));
    produce(&topic, &records).await;

    let (lines, stderr) = replay(&topic, &[]);
    assert_eq!(lines.len(), records.len(), "{stderr}");
    let by_fastavro: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["record"]["actor"] == "written-by-fastavro")
        .collect();
    assert_eq!(by_fastavro.len(), kinds);
    let mut schemas: Vec<&str> = by_fastavro
        .iter()
        .map(|l| l["schema"].as_str().unwrap())
        .collect();
    schemas.sort();
    schemas.dedup();
    assert_eq!(schemas.len(), kinds, "every kind decoded: {schemas:?}");
    for l in &lines {
        assert_eq!(l["topic"], topic.as_str());
        assert!(l["partition"].is_i64() && l["offset"].is_i64() && l["timestamp"].is_i64());
    }
    let garbage = lines.iter().find(|l| l["key"] == "garbage").unwrap();
    assert!(
        garbage["error"].as_str().unwrap().contains("magic"),
        "{garbage}"
    );
    let tomb = lines.iter().find(|l| l["key"] == "user/1").unwrap();
    assert_eq!(tomb["tombstone"], true);
    // The delivery batch shows the message it carries, decoded.
    let delivery = lines
        .iter()
        .find(|l| l["schema"] == "parley.DeliveryBatch" && l["key"] == "sample")
        .unwrap();
    assert_eq!(
        delivery["record"]["event"]["schema"],
        "parley.MessagePosted"
    );
    assert_eq!(
        delivery["record"]["event"]["record"]["body"],
        "héllo, wörld ✓"
    );
    assert!(stderr.contains("1 undecodable"), "{stderr}");

    // Options: one partition, from an offset, a limit.
    // The busiest partition has offsets 0..n with n ≥ 3 (23 records over 3 partitions).
    let mut per_partition = std::collections::BTreeMap::<i64, usize>::new();
    for l in &lines {
        *per_partition
            .entry(l["partition"].as_i64().unwrap())
            .or_default() += 1;
    }
    let (&p, &n) = per_partition.iter().max_by_key(|(_, n)| **n).unwrap();
    assert!(n >= 3);
    let (one, _) = replay(
        &topic,
        &[
            "--partition",
            &p.to_string(),
            "--offset",
            "1",
            "--limit",
            "2",
        ],
    );
    let got: Vec<(i64, i64)> = one
        .iter()
        .map(|l| {
            (
                l["partition"].as_i64().unwrap(),
                l["offset"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, vec![(p, 1), (p, 2)]);
}

#[tokio::test]
async fn closing_the_output_pipe_is_not_an_error() {
    let topic = make_topic(1).await;
    let r = parley_schemas::samples::message_posted();
    let records: Vec<_> = (0..3000)
        .map(|i| (format!("k{i}"), Some(parley_schemas::encode(&r).unwrap())))
        .collect();
    produce(&topic, &records).await;
    let mut child = common::parley()
        .args(["replay", "--topic", &topic, "--log", &common::log_url()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap(); // reader dropped: pipe closed
    assert!(first.contains("parley.MessagePosted"));
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}

#[tokio::test]
async fn replay_of_a_missing_topic_fails_clearly() {
    let out = common::parley()
        .args([
            "replay",
            "--topic",
            "no-such-topic-here",
            "--log",
            &common::log_url(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such-topic-here does not exist"), "{err}");
}
