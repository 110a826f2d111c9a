//! Helpers shared by the end-to-end tests: the broker they run against, fresh topic
//! prefixes, the `parley` binary, and whole stacks ([`stack`]).
#![allow(dead_code)]

pub mod chat;
pub mod stack;

use std::process::Command;

/// The broker `scripts/kafka.sh start` runs (override with `PARLEY_TEST_KAFKA`).
pub fn bootstrap() -> String {
    std::env::var("PARLEY_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

pub fn log_url() -> String {
    format!("kafka://{}", bootstrap())
}

/// A topic prefix of this test only.
pub fn fresh_prefix(test: &str) -> String {
    format!(
        "t-{test}-{}.",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// The `parley` binary built for these tests.
pub fn parley() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_parley"));
    c.env("PARLEY_LOG_LEVEL", "warn");
    c
}
