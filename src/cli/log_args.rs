//! Where the log is and how to talk to it: shared by every subcommand.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use parley_sequencer::{KafkaConfig, KafkaLog, TopicKind, TopicSettings};

/// The broker every subcommand but `parley dev` talks to when `--log` is not given.
pub const DEFAULT_KAFKA: &str = "kafka://127.0.0.1:9092";

#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// The log: `kafka://HOST:PORT[,HOST:PORT…]`, or `embedded://DIR`, a log in a local
    /// directory that one process uses (`parley dev`, benchmarks). Default: the embedded
    /// log for `parley dev`, kafka://127.0.0.1:9092 for everything else.
    #[arg(long = "log", global = true, env = "PARLEY_LOG")]
    pub url: Option<String>,
    /// Prefix of every topic name.
    #[arg(
        long,
        global = true,
        env = "PARLEY_TOPIC_PREFIX",
        default_value = "parley."
    )]
    pub topic_prefix: String,
    /// Producer linger: how long an append may wait to share a batch (ms).
    #[arg(long, global = true, env = "PARLEY_LINGER_MS", default_value_t = 0)]
    pub linger_ms: u32,
    /// Embedded log: the longest an append waits for others to share its fsync while
    /// appends come steadily (µs; 0: never). The wait is what the rate needs to bring two
    /// more, at least 500 µs and at most this; below one append per delay nothing waits,
    /// and nothing is acknowledged before its fsync either way.
    #[arg(
        long = "log-commit-delay-us",
        global = true,
        env = "PARLEY_LOG_COMMIT_DELAY_US",
        default_value_t = parley_sequencer::embedded::DEFAULT_COMMIT_DELAY.as_micros() as u32,
        value_parser = clap::value_parser!(u32).range(0..=100_000)
    )]
    pub commit_delay_us: u32,
    /// Consumer fetch wait: how long the broker may hold a fetch while no new data
    /// comes (ms). New data answers a held fetch at once, so this is the cost of an idle
    /// reader (one fetch per wait per reader), not a latency.
    #[arg(
        long,
        global = true,
        env = "PARLEY_FETCH_WAIT_MS",
        default_value_t = 500
    )]
    pub fetch_wait_ms: u32,
    /// Kafka, under load: the readers every message passes (the fanout-worker's and the
    /// push role's groups, the projector's reader of `events`) ask the broker to answer
    /// a fetch only once this many bytes wait, or after --bulk-fetch-wait-ms. Fewer,
    /// larger fetches: less CPU per message in the broker and in Parley, for up to the
    /// wait more latency per message, and those readers ask once per wait when idle
    /// (0: off; each fetch is answered as soon as a record comes).
    #[arg(
        long,
        global = true,
        env = "PARLEY_BULK_FETCH_BYTES",
        default_value_t = 0,
        value_parser = clap::value_parser!(u32).range(0..=52_428_800)
    )]
    pub bulk_fetch_bytes: u32,
    /// How long the broker may hold a bulk reader's fetch for --bulk-fetch-bytes (ms).
    #[arg(
        long,
        global = true,
        env = "PARLEY_BULK_FETCH_WAIT_MS",
        default_value_t = 5,
        value_parser = clap::value_parser!(u32).range(1..=1000)
    )]
    pub bulk_fetch_wait_ms: u32,
    /// Compression of the records this process appends to Kafka.
    #[arg(
        long,
        global = true,
        env = "PARLEY_KAFKA_COMPRESSION",
        default_value = "none",
        value_parser = ["none", "gzip", "snappy", "lz4", "zstd"]
    )]
    pub kafka_compression: String,
    /// An append not confirmed within this time fails (ms).
    #[arg(
        long,
        global = true,
        env = "PARLEY_DELIVERY_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub delivery_timeout_ms: u32,
}

impl LogArgs {
    /// The log's URL as given, or Kafka's default.
    pub fn url(&self) -> &str {
        self.url.as_deref().unwrap_or(DEFAULT_KAFKA)
    }

    /// The directory of `--log embedded://DIR`, if that is the log.
    pub fn embedded_dir(&self) -> anyhow::Result<Option<PathBuf>> {
        match self
            .url
            .as_deref()
            .and_then(|u| u.strip_prefix("embedded://"))
        {
            Some("") => bail!("--log embedded://DIR: no directory"),
            Some(dir) => Ok(Some(PathBuf::from(dir))),
            None => Ok(None),
        }
    }

    pub fn kafka_config(&self) -> anyhow::Result<KafkaConfig> {
        let url = self.url();
        let Some(bootstrap) = url.strip_prefix("kafka://") else {
            bail!("--log {url}: expected kafka://HOST:PORT (or embedded://DIR where a single process uses the log)");
        };
        if bootstrap.is_empty() {
            bail!("--log {url}: no broker address");
        }
        Ok(KafkaConfig {
            bootstrap: bootstrap.to_string(),
            linger_ms: self.linger_ms,
            fetch_wait_ms: self.fetch_wait_ms,
            bulk_fetch_bytes: self.bulk_fetch_bytes,
            bulk_fetch_wait_ms: self.bulk_fetch_wait_ms,
            compression: self.kafka_compression.clone(),
            delivery_timeout_ms: self.delivery_timeout_ms,
            ..KafkaConfig::default()
        })
    }

    pub async fn connect(&self) -> anyhow::Result<KafkaLog> {
        let config = self.kafka_config()?;
        KafkaLog::connect(config)
            .await
            .with_context(|| format!("connecting to {}", self.url()))
    }

    pub fn settings(&self) -> TopicSettings {
        TopicSettings {
            prefix: self.topic_prefix.clone(),
            ..TopicSettings::default()
        }
    }

    /// A topic named by role (`events`) or in full (`parley.events`, `other`).
    pub fn topic_name(&self, name: &str) -> String {
        TopicKind::ALL
            .iter()
            .find(|k| k.suffix() == name)
            .map(|&k| self.settings().name(k))
            .unwrap_or_else(|| name.to_string())
    }
}
