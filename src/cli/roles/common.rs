//! What every role shares: binding, the log connection, the service token, the views
//! other roles ask, and small helpers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use parley_projector::directory::Directory;
use parley_projector::{HttpViews, ProjectorConfig, ShardedViews, Views};
use parley_sequencer::{EventLog, KafkaLog};
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::cli::LogArgs;

pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}

/// What every role shares for operators: readiness, and the projector's service token.
#[derive(Debug, Clone, Args)]
pub struct OpsArgs {
    /// `/readyz` says ready while every partition the role consumes (or, for a gateway,
    /// the projector it reads) is within this many records of the end of the log.
    #[arg(long, env = "PARLEY_READY_LAG", default_value_t = 1_000)]
    pub(super) ready_lag: i64,
    /// The token of the projector's query API: the projector refuses requests without
    /// it, and gateways, fanout-workers and push send it (at least 32 bytes).
    #[arg(long, env = "PARLEY_SERVICE_TOKEN", hide_env_values = true)]
    pub(super) service_token: Option<String>,
}

/// The shortest secret taken: JWT key, service token, push signing key.
pub(super) const MIN_SECRET: usize = parley_gateway::auth::MIN_SECRET_BYTES;

/// `value` of `var` if it is at least [`MIN_SECRET`] bytes.
/// The key-encryption key of sealed content, for every role that seals or opens it.
#[derive(Debug, Clone, Args)]
pub struct KekArgs {
    /// Key-encryption key: with one, message bodies are sealed before they reach the
    /// log, under data keys kept in the compacted `keys` topic (erasure by
    /// crypto-shredding; docs/ARCHITECTURE.md, *Erasure*). At least 32 bytes, or versions
    /// `v1:<secret>,v2:<secret>` (the newest wraps new keys). Every gateway and
    /// projector of a deployment needs the same one.
    #[arg(long = "kek", env = "PARLEY_KEK", hide_env_values = true)]
    pub(crate) kek: Option<String>,
}

impl KekArgs {
    pub(crate) fn kek(&self) -> anyhow::Result<Option<parley_schemas::sealed::Kek>> {
        self.kek
            .as_deref()
            .map(|s| parley_schemas::sealed::Kek::parse(s).map_err(anyhow::Error::msg))
            .transpose()
    }
}

pub(super) fn long_enough(var: &str, value: &str) -> anyhow::Result<String> {
    anyhow::ensure!(
        value.len() >= MIN_SECRET,
        "{var} is {} bytes; it must be at least {MIN_SECRET}",
        value.len()
    );
    Ok(value.to_string())
}

impl OpsArgs {
    /// The service token, if set; refused when shorter than [`MIN_SECRET`].
    pub(super) fn token(&self) -> anyhow::Result<Option<String>> {
        self.service_token
            .as_deref()
            .map(|t| long_enough("PARLEY_SERVICE_TOKEN", t))
            .transpose()
    }

    /// The service token a projector serving its API must have.
    pub(super) fn required_token(&self) -> anyhow::Result<String> {
        self.token()?.ok_or_else(|| {
            anyhow::anyhow!(
                "set PARLEY_SERVICE_TOKEN (or --service-token), at least {MIN_SECRET} \
                 bytes: every request to the projector's API must carry it, and gateways, \
                 fanout-workers and push send it"
            )
        })
    }
}

/// A random secret of 64 hex digits.
pub(super) fn random_secret() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

pub async fn connect(
    log: &LogArgs,
    session_timeout_ms: Option<u32>,
) -> anyhow::Result<Arc<dyn EventLog>> {
    connect_tuned(log, |c| {
        if let Some(ms) = session_timeout_ms {
            c.session_timeout_ms = ms;
        }
    })
    .await
}

/// [`connect`], with the Kafka client's settings changed by `tune`.
pub async fn connect_tuned(
    log: &LogArgs,
    tune: impl FnOnce(&mut parley_sequencer::KafkaConfig),
) -> anyhow::Result<Arc<dyn EventLog>> {
    if let Some(dir) = log.embedded_dir()? {
        return open_embedded(dir, log).await;
    }
    let mut config = log.kafka_config()?;
    tune(&mut config);
    let kafka = KafkaLog::connect(config)
        .await
        .with_context(|| format!("connecting to {}", log.url()))?;
    Ok(Arc::new(kafka))
}

/// The embedded log in `dir`: for one process (`parley dev`, benchmarks). Topics kept
/// there by an earlier version take this version's configs (those `log` names).
pub async fn open_embedded(dir: PathBuf, log: &LogArgs) -> anyhow::Result<Arc<dyn EventLog>> {
    let specs = log.settings().spec();
    let mut config = parley_sequencer::EmbeddedConfig::new(&dir);
    config.commit_delay = Duration::from_micros(log.commit_delay_us.into());
    // How often retention and compaction run (default a minute).
    if let Some(ms) = std::env::var("PARLEY_EMBEDDED_MAINTENANCE_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        config.maintenance_every = std::time::Duration::from_millis(ms.max(100));
    }
    let embedded = parley_sequencer::EmbeddedLog::open(config)
        .await
        .with_context(|| {
            format!(
                "opening the embedded log in {} (is another parley using it?)",
                dir.display()
            )
        })?;
    for topic in embedded.adopt_configs(&specs).await? {
        info!(%topic, "embedded log: the topic's configs brought to this version's");
    }
    Ok(Arc::new(embedded))
}

pub(super) fn projector_config(
    log: &LogArgs,
    data_dir: PathBuf,
    partitions: &[i32],
    apply_delay_ms: u64,
) -> ProjectorConfig {
    let mut c = ProjectorConfig::new(data_dir, &log.settings().names());
    if !partitions.is_empty() {
        c.partitions = Some(partitions.to_vec());
    }
    c.apply_delay = Duration::from_millis(apply_delay_ms);
    c
}

pub(super) fn default_worker_id() -> String {
    format!("{}-{}", hostname(), std::process::id())
}

pub(super) fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "parley".into())
}

/// The views other roles ask: one projector at `url`, or else every replica the
/// directory topic announces.
pub(super) async fn views_of(
    url: Option<&str>,
    log: &Arc<dyn EventLog>,
    args: &LogArgs,
    ops: &OpsArgs,
    shutdown: &tokio_util::sync::CancellationToken,
) -> anyhow::Result<Arc<dyn Views>> {
    let token = ops.token()?;
    if token.is_none() {
        warn!("PARLEY_SERVICE_TOKEN is not set: projectors will refuse this role's requests");
    }
    if let Some(url) = url {
        return Ok(Arc::new(HttpViews::new(url)?.with_token(token)));
    }
    let names = args.settings().names();
    let directory = Directory::follow(log.clone(), &names.directory, shutdown.clone())
        .await
        .with_context(|| format!("reading the directory of projectors ({})", names.directory))?;
    let partitions = log
        .partition_count(&names.events)
        .await
        .with_context(|| format!("the partitions of {}", names.events))?;
    info!(
        directory = %names.directory,
        live = directory.live().len(),
        "finding projector replicas in the directory"
    );
    Ok(Arc::new(
        ShardedViews::new(directory, partitions).with_token(token),
    ))
}

pub(super) async fn axum_serve(
    listener: TcpListener,
    app: axum::Router,
    stop: tokio_util::sync::CancellationToken,
) {
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await;
}
