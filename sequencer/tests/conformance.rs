//! The [`EventLog`] conformance suite, run against each backend.
//!
//! The Kafka backend runs against the real broker that `scripts/kafka.sh start` runs
//! (`PARLEY_TEST_KAFKA`, default `127.0.0.1:9092`). No broker is a failure, not a skip.

mod suite;

use parley_sequencer::{KafkaConfig, KafkaLog};
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
