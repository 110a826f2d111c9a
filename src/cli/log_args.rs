//! Where the log is and how to talk to it: shared by every subcommand.

use anyhow::{bail, Context};
use clap::Args;
use parley_sequencer::{KafkaConfig, KafkaLog, TopicKind, TopicSettings};

#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// The log: `kafka://HOST:PORT[,HOST:PORT…]`.
    #[arg(
        long = "log",
        global = true,
        env = "PARLEY_LOG",
        default_value = "kafka://127.0.0.1:9092"
    )]
    pub url: String,
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
    /// Consumer fetch wait: how long the broker may hold a fetch while no new data
    /// comes (ms). New data answers a held fetch at once, so this is the cost of an idle
    /// reader (one fetch per wait per reader), not a latency.
    #[arg(
        long,
        global = true,
        env = "PARLEY_FETCH_WAIT_MS",
        default_value_t = 100
    )]
    pub fetch_wait_ms: u32,
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
    pub fn kafka_config(&self) -> anyhow::Result<KafkaConfig> {
        let Some(bootstrap) = self.url.strip_prefix("kafka://") else {
            bail!("--log {}: expected kafka://HOST:PORT", self.url);
        };
        if bootstrap.is_empty() {
            bail!("--log {}: no broker address", self.url);
        }
        Ok(KafkaConfig {
            bootstrap: bootstrap.to_string(),
            linger_ms: self.linger_ms,
            fetch_wait_ms: self.fetch_wait_ms,
            delivery_timeout_ms: self.delivery_timeout_ms,
            ..KafkaConfig::default()
        })
    }

    pub async fn connect(&self) -> anyhow::Result<KafkaLog> {
        let config = self.kafka_config()?;
        KafkaLog::connect(config)
            .await
            .with_context(|| format!("connecting to {}", self.url))
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
