//! The [`EventLog`] conformance suite, run against each backend.
//!
//! The Kafka backend runs against the real broker that `scripts/kafka.sh start` runs
//! (`PARLEY_TEST_KAFKA`, default `127.0.0.1:9092`). No broker is a failure, not a skip.
//! The embedded backend runs on a fresh directory per test.

mod suite;

use parley_sequencer::{EmbeddedConfig, EmbeddedLog, KafkaConfig, KafkaLog};
use suite as conformance;

async fn kafka() -> KafkaLog {
    let bootstrap = std::env::var("PARLEY_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let config = KafkaConfig {
        // Short, so that an append that cannot be persisted fails within the test.
        delivery_timeout_ms: 3_000,
        ..KafkaConfig::with_bootstrap(bootstrap)
    };
    KafkaLog::connect(config)
        .await
        .expect("a Kafka broker for the conformance suite (scripts/kafka.sh start)")
}

conformance_suite!(kafka, kafka());

async fn embedded() -> EmbeddedLog {
    // Kept for the test's life: the log's files are what it tests.
    let dir = tempfile::tempdir().expect("a scratch directory").keep();
    EmbeddedLog::open(EmbeddedConfig::new(dir))
        .await
        .expect("an embedded log")
}

conformance_suite!(embedded, embedded());
