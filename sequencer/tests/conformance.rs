//! The [`EventLog`] conformance suite, run against each backend.
//!
//! The Kafka backend runs against the real broker that `scripts/kafka.sh start` runs
//! (`PARLEY_TEST_KAFKA`, default `127.0.0.1:9092`). No broker is a failure, not a skip.
//! The embedded backend runs on a fresh directory per test.

mod suite;

use parley_sequencer::kafka::LoopbackTopics;
use parley_sequencer::{EmbeddedConfig, EmbeddedLog, KafkaConfig, KafkaLog};
use suite as conformance;

/// The broker of `scripts/kafka.sh start`, with bulk readers on when `bulk_fetch_bytes`
/// is not 0.
async fn kafka_with(bulk_fetch_bytes: u32) -> KafkaLog {
    let bootstrap = std::env::var("PARLEY_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let config = KafkaConfig {
        // Short, so that an append that cannot be persisted fails within the test.
        delivery_timeout_ms: 3_000,
        bulk_fetch_bytes,
        bulk_fetch_wait_ms: 20,
        ..KafkaConfig::with_bootstrap(bootstrap)
    };
    KafkaLog::connect(config)
        .await
        .expect("a Kafka broker for the conformance suite (scripts/kafka.sh start)")
}

async fn kafka() -> KafkaLog {
    kafka_with(0).await
}

conformance_suite!(kafka, kafka());

/// The whole suite again with bulk readers on (`--bulk-fetch-bytes`): consumer groups and
/// `read_bulk` then wait for 64 KiB or 20 ms per fetch, and must keep every property.
async fn kafka_bulk() -> KafkaLog {
    kafka_with(65_536).await
}

conformance_suite!(kafka_bulk, kafka_bulk());

/// The whole suite again with every topic looped (`parley dev` loops back `events`): bulk
/// readers and group members take this process's appends from memory, and fetch only
/// the rest, 1 MiB or 200 ms at a time; they must keep every property.
async fn kafka_loopback() -> KafkaLog {
    let bootstrap = std::env::var("PARLEY_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let config = KafkaConfig {
        delivery_timeout_ms: 3_000,
        loopback: LoopbackTopics::All,
        loopback_fetch_wait_ms: 200,
        ..KafkaConfig::with_bootstrap(bootstrap)
    };
    KafkaLog::connect(config)
        .await
        .expect("a Kafka broker for the conformance suite (scripts/kafka.sh start)")
}

conformance_suite!(kafka_loopback, kafka_loopback());

async fn embedded() -> EmbeddedLog {
    // Kept for the test's life: the log's files are what it tests.
    let dir = tempfile::tempdir().expect("a scratch directory").keep();
    EmbeddedLog::open(EmbeddedConfig::new(dir))
        .await
        .expect("an embedded log")
}

conformance_suite!(embedded, embedded());
