//! The roles: `parley projector`, `parley fanout`, `parley gateway`, and `parley dev`
//! (all of them in one process). Each parses its options, connects to the log, and calls
//! the role crate's `run` with a shutdown token that SIGINT/SIGTERM cancel.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use parley_fanout::state::Limits;
use parley_fanout::FanoutConfig;
use parley_gateway::limits::{Rate, RateConfig};
use parley_gateway::GatewayConfig;
use parley_projector::directory::Directory;
use parley_projector::{HttpViews, Projector, ProjectorConfig, ShardedViews, Views};
use parley_sequencer::{EventLog, KafkaLog, TopicSpec};
use tokio::net::TcpListener;
use tracing::{info, warn};

use super::LogArgs;

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
    ready_lag: i64,
    /// The token of the projector's query API: the projector refuses requests without
    /// it, and gateways, fanout-workers and push send it (at least 32 bytes).
    #[arg(long, env = "PARLEY_SERVICE_TOKEN", hide_env_values = true)]
    service_token: Option<String>,
}

/// The shortest secret taken: JWT key, service token, push signing key.
const MIN_SECRET: usize = parley_gateway::auth::MIN_SECRET_BYTES;

/// `value` of `var` if it is at least [`MIN_SECRET`] bytes.
fn long_enough(var: &str, value: &str) -> anyhow::Result<String> {
    anyhow::ensure!(
        value.len() >= MIN_SECRET,
        "{var} is {} bytes; it must be at least {MIN_SECRET}",
        value.len()
    );
    Ok(value.to_string())
}

impl OpsArgs {
    /// The service token, if set; refused when shorter than [`MIN_SECRET`].
    fn token(&self) -> anyhow::Result<Option<String>> {
        self.service_token
            .as_deref()
            .map(|t| long_enough("PARLEY_SERVICE_TOKEN", t))
            .transpose()
    }

    /// The service token a projector serving its API must have.
    fn required_token(&self) -> anyhow::Result<String> {
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
fn random_secret() -> String {
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
        return open_embedded(dir, &log.settings().spec()).await;
    }
    let mut config = log.kafka_config()?;
    tune(&mut config);
    let kafka = KafkaLog::connect(config)
        .await
        .with_context(|| format!("connecting to {}", log.url()))?;
    Ok(Arc::new(kafka))
}

/// The embedded log in `dir`: for one process (`parley dev`, benchmarks). Topics kept
/// there by an earlier version take this version's configs (`specs`).
pub async fn open_embedded(dir: PathBuf, specs: &[TopicSpec]) -> anyhow::Result<Arc<dyn EventLog>> {
    let log = parley_sequencer::EmbeddedLog::open(parley_sequencer::EmbeddedConfig::new(&dir))
        .await
        .with_context(|| {
            format!(
                "opening the embedded log in {} (is another parley using it?)",
                dir.display()
            )
        })?;
    for topic in log.adopt_configs(specs).await? {
        info!(%topic, "embedded log: the topic's configs brought to this version's");
    }
    Ok(Arc::new(log))
}

fn projector_config(
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

fn default_worker_id() -> String {
    format!("{}-{}", hostname(), std::process::id())
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "parley".into())
}

/// The views other roles ask: one projector at `url`, or else every replica the
/// directory topic announces.
async fn views_of(
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

#[derive(Debug, Args)]
pub struct ProjectorArgs {
    /// Address of the query API (internal: gateways and fanout-workers call it).
    #[arg(long, env = "PARLEY_PROJECTOR_HTTP", default_value = "127.0.0.1:8090")]
    http: SocketAddr,
    /// Where the RocksDB views live.
    #[arg(long, env = "PARLEY_DATA_DIR", default_value = "parley-data/projector")]
    data_dir: PathBuf,
    /// Partitions of events this projector owns (comma-separated; default all). Every
    /// projector with the same list is a replica of one shard.
    #[arg(long, value_delimiter = ',', conflicts_with = "shard")]
    partitions: Vec<i32>,
    /// This projector's shard as I/N: it owns the partitions p with p % N == I (e.g.
    /// `--shard 0/2` the even ones). A shortcut for --partitions.
    #[arg(long, value_parser = parse_shard)]
    shard: Option<(i32, i32)>,
    /// The URL of the query API as gateways and fanout-workers reach it, announced in
    /// the directory topic (default: http:// and --http, with the host name when
    /// --http listens on every address).
    #[arg(long, env = "PARLEY_ADVERTISE_URL")]
    advertise: Option<String>,
    /// Slow every batch down by this many ms (tests of the read-your-log barrier only).
    #[arg(long, hide = true, default_value_t = 0)]
    debug_apply_delay_ms: u64,
    /// Wipe the views in --data-dir and rebuild them from what the log holds now: for
    /// views that no longer fit the log (ahead of its end, or behind its start because
    /// retention deleted records they never applied).
    #[arg(long)]
    rebuild: bool,
    #[command(flatten)]
    ops: OpsArgs,
    #[command(flatten)]
    log: LogArgs,
}

fn parse_shard(s: &str) -> Result<(i32, i32), String> {
    let err = || format!("--shard {s}: expected I/N with 0 <= I < N, e.g. 0/2");
    let (i, n) = s.split_once('/').ok_or_else(err)?;
    let (i, n): (i32, i32) = (
        i.trim().parse().map_err(|_| err())?,
        n.trim().parse().map_err(|_| err())?,
    );
    if n < 1 || i < 0 || i >= n {
        return Err(err());
    }
    Ok((i, n))
}

impl ProjectorArgs {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let token = self.ops.required_token()?;
        let log = connect(&self.log, None).await?;
        let partitions = match self.shard {
            Some((i, n)) => {
                let count = log
                    .partition_count(
                        &self
                            .log
                            .settings()
                            .name(parley_sequencer::TopicKind::Events),
                    )
                    .await?;
                anyhow::ensure!(
                    n <= count,
                    "--shard {i}/{n}: the events topic has only {count} partitions"
                );
                (0..count).filter(|p| p % n == i).collect()
            }
            None => self.partitions.clone(),
        };
        let mut config = projector_config(
            &self.log,
            self.data_dir,
            &partitions,
            self.debug_apply_delay_ms,
        );
        config.rebuild_if_unfit = self.rebuild;
        config.service_token = Some(token);
        config.ready_lag = self.ops.ready_lag;
        config.advertise = Some(match self.advertise {
            Some(url) => url,
            None if self.http.ip().is_unspecified() => {
                format!("http://{}:{}", hostname(), self.http.port())
            }
            None => format!("http://{}", self.http),
        });
        let listener = bind(self.http).await?;
        parley_projector::run(config, log, listener, crate::shutdown::on_signal()).await?;
        Ok(ExitCode::SUCCESS)
    }
}

#[derive(Debug, Args)]
pub struct FanoutArgs {
    /// One projector's query API, for taking partitions over quickly. Without it, the
    /// projector replicas announced in the directory topic are used; with none serving a
    /// partition, its state is rebuilt from the log.
    #[arg(long, env = "PARLEY_PROJECTOR_URL")]
    projector: Option<String>,
    /// This worker's name (default: host-pid).
    #[arg(long, env = "PARLEY_WORKER_ID")]
    worker_id: Option<String>,
    /// How soon a dead worker's partitions move to the others (ms).
    #[arg(long, env = "PARLEY_SESSION_TIMEOUT_MS", default_value_t = 10_000)]
    session_timeout_ms: u32,
    /// Message ids remembered per partition to drop repeated sends.
    #[arg(long, env = "PARLEY_DEDUP_WINDOW", default_value_t = 20_000)]
    dedup_window: usize,
    /// Groups of at least this many members are broadcast to every gateway slot, which
    /// finds its own members, instead of routed member by member (no inbox entries or
    /// push jobs per member).
    #[arg(long, env = "PARLEY_LARGE_GROUP", default_value_t = 1_000)]
    large_group: usize,
    /// Typing indicators routed per large group and second, at most.
    #[arg(long, env = "PARLEY_LARGE_TYPING_PER_S", default_value_t = 2)]
    large_typing_per_s: u32,
    /// How often routed offsets are committed (ms): a successor resumes from the last
    /// commit and routes again what came after it.
    #[arg(long, env = "PARLEY_COMMIT_INTERVAL_MS", default_value_t = 200)]
    commit_interval_ms: u64,
    /// Sleep this many ms before warming each partition taken over (tests of slow
    /// takeovers only).
    #[arg(long, hide = true, default_value_t = 0)]
    debug_warm_delay_ms: u64,
    /// Records held in memory, in all, for partitions being taken over; past a share of
    /// it a partition is paused (the worker keeps reading the others, and stays in the
    /// group however long the warm-up takes).
    #[arg(long, env = "PARLEY_HOLD_MAX", default_value_t = 50_000)]
    hold_max: usize,
    /// How long the worker may go without asking the broker for records before the group
    /// takes its partitions away (ms).
    #[arg(long, env = "PARLEY_MAX_POLL_INTERVAL_MS", default_value_t = 300_000)]
    max_poll_interval_ms: u32,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "PARLEY_FANOUT_HTTP", default_value = "127.0.0.1:8091")]
    http: SocketAddr,
    #[command(flatten)]
    ops: OpsArgs,
    #[command(flatten)]
    log: LogArgs,
}

impl FanoutArgs {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let listener = bind(self.http).await?;
        let log = connect_tuned(&self.log, |c| {
            c.session_timeout_ms = self.session_timeout_ms;
            c.max_poll_interval_ms = self.max_poll_interval_ms;
        })
        .await?;
        let shutdown = crate::shutdown::on_signal();
        let views = views_of(
            self.projector.as_deref(),
            &log,
            &self.log,
            &self.ops,
            &shutdown,
        )
        .await?;
        let mut config = FanoutConfig::new(
            self.log.settings().names(),
            format!("{}fanout", self.log.topic_prefix),
            self.worker_id.clone().unwrap_or_else(default_worker_id),
        );
        config.limits = Limits {
            dedup_window: self.dedup_window.max(1),
            large_group: self.large_group.max(1),
        };
        config.large_typing_per_s = self.large_typing_per_s.max(1);
        config.commit_interval = Duration::from_millis(self.commit_interval_ms.max(1));
        config.warm_delay = Duration::from_millis(self.debug_warm_delay_ms);
        config.hold_max = self.hold_max.max(1);
        config.ready_lag = self.ops.ready_lag;
        tokio::spawn(parley_ops::http::serve(
            listener,
            config.health.clone(),
            shutdown.clone(),
        ));
        parley_fanout::run(config, log, Some(views), shutdown).await?;
        Ok(ExitCode::SUCCESS)
    }
}

#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// Address clients connect to.
    #[arg(long, env = "PARLEY_HTTP", default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// This gateway's slot: its partition of the deliveries topic (unique per gateway).
    #[arg(long, env = "PARLEY_GATEWAY_ID", default_value_t = 0)]
    gateway_id: i32,
    /// One projector's query API. Without it, the projector replicas announced in the
    /// directory topic are used (every shard, with failover between replicas).
    #[arg(long, env = "PARLEY_PROJECTOR_URL")]
    projector: Option<String>,
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    targets: WebhookTargetArgs,
    #[command(flatten)]
    ops: OpsArgs,
    #[command(flatten)]
    log: LogArgs,
}

/// Options of the client-facing side.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Serve POST /v1/dev/token, which hands a token to anyone: local use only.
    #[arg(long, env = "PARLEY_DEV_AUTH")]
    dev_auth: bool,
    /// HS256 secret of client tokens (required unless --dev-auth).
    #[arg(long, env = "PARLEY_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// Seconds between presence heartbeats.
    #[arg(long, env = "PARLEY_HEARTBEAT_S", default_value_t = 10)]
    heartbeat_s: u64,
    /// Seconds between WebSocket pings; a socket silent for three of them (no pong, no
    /// frame) is closed as dead, and its user counts as offline.
    #[arg(long, env = "PARLEY_PING_INTERVAL_S", default_value_t = 15)]
    ping_interval_s: u64,
    /// Seconds a single WebSocket write may take before the socket is closed as stuck.
    #[arg(long, env = "PARLEY_WRITE_TIMEOUT_S", default_value_t = 10)]
    write_timeout_s: u64,
    /// Messages per sync_batch frame of a sync (1 to 500): smaller frames for slow links.
    #[arg(long, env = "PARLEY_SYNC_PAGE", default_value_t = parley_gateway::sync::PAGE,
          value_parser = clap::value_parser!(u32).range(1..=500))]
    sync_page: u32,
    /// Members of groups up to this size see each other's presence; larger groups' members
    /// ask for it (presence_query).
    #[arg(long, env = "PARLEY_PRESENCE_GROUP_LIMIT", default_value_t = 50)]
    presence_group_limit: usize,
    #[command(flatten)]
    rates: RateArgs,
    #[command(flatten)]
    presence: PresenceArgs,
}

/// Rate limits of the client-facing side (a limited client gets `rate_limited` with
/// `retry_after_ms`, or HTTP 429 with `Retry-After`).
#[derive(Debug, Clone, Args)]
pub struct RateArgs {
    /// Messages a user may send per second (every session together); bursts of 4x.
    #[arg(long, env = "PARLEY_RATE_SENDS", default_value_t = RateConfig::default().sends.count)]
    rate_sends_per_s: u32,
    /// Typing indicators a user may send per second; bursts of 5.
    #[arg(long, env = "PARLEY_RATE_TYPING", default_value_t = RateConfig::default().typing.count)]
    rate_typing_per_s: u32,
    /// Conversations a user may create per minute; bursts of 20.
    #[arg(long, env = "PARLEY_RATE_CREATES", default_value_t = RateConfig::default().creates.count)]
    rate_creates_per_min: u32,
    /// Member adds and removals a user may make per minute; bursts of 30.
    #[arg(long, env = "PARLEY_RATE_ADDS", default_value_t = RateConfig::default().adds.count)]
    rate_adds_per_min: u32,
    /// Read units a user may spend per second; bursts of 4x. A history page, receipts or
    /// the inbox cost 1, a presence query 2 (20 with no session on this gateway), a long
    /// poll, a sync or the conversation list 5.
    #[arg(long, env = "PARLEY_RATE_READS", default_value_t = RateConfig::default().reads.count)]
    rate_reads_per_s: u32,
    /// Settings changes a user may make per minute (devices, mutes, opt-ins, presence
    /// visibility, a group's roles and settings); bursts of 30.
    #[arg(long, env = "PARLEY_RATE_SETTINGS", default_value_t = RateConfig::default().settings.count)]
    rate_settings_per_min: u32,
    /// WebSocket sessions a user may open per minute; bursts of 20.
    #[arg(long, env = "PARLEY_RATE_CONNECTS", default_value_t = RateConfig::default().connects.count)]
    rate_connects_per_min: u32,
    /// WebSocket upgrades one IP address may make per minute; bursts of 200.
    #[arg(long, env = "PARLEY_RATE_UPGRADES_PER_IP", default_value_t = RateConfig::default().upgrades_per_ip.count)]
    rate_upgrades_per_ip_per_min: u32,
    /// Frames one session may have in progress (history, sync, receipts, typing,
    /// presence queries); past it the client is told to slow down.
    #[arg(long, env = "PARLEY_FRAMES_IN_PROGRESS", default_value_t = RateConfig::default().frames_in_progress)]
    frames_in_progress: usize,
}

impl RateArgs {
    /// The rates given, each with its default burst (sends: four seconds' worth).
    fn config(&self) -> RateConfig {
        let d = RateConfig::default();
        let with = |count: u32, default: Rate| Rate { count, ..default };
        RateConfig {
            sends: Rate {
                count: self.rate_sends_per_s,
                burst: self.rate_sends_per_s.saturating_mul(4),
                ..d.sends
            },
            typing: with(self.rate_typing_per_s, d.typing),
            creates: with(self.rate_creates_per_min, d.creates),
            adds: with(self.rate_adds_per_min, d.adds),
            connects: with(self.rate_connects_per_min, d.connects),
            upgrades_per_ip: with(self.rate_upgrades_per_ip_per_min, d.upgrades_per_ip),
            reads: Rate {
                count: self.rate_reads_per_s,
                burst: self.rate_reads_per_s.saturating_mul(4),
                ..d.reads
            },
            settings: with(self.rate_settings_per_min, d.settings),
            frames_in_progress: self.frames_in_progress,
        }
    }
}

/// Where presence is kept for people to see.
#[derive(Debug, Clone, Args)]
pub struct PresenceArgs {
    /// Redis for presence (e.g. redis://127.0.0.1:6379/). Without it, presence is
    /// derived from the presence topic. Its password is never printed (logs show the URL
    /// with `***` in its place, and --help hides the variable's value).
    #[arg(long, env = "PARLEY_REDIS_URL", hide_env_values = true)]
    redis: Option<String>,
    /// Prefix of the presence keys in Redis.
    #[arg(long, env = "PARLEY_REDIS_PREFIX", default_value = "parley:")]
    redis_prefix: String,
}

impl PresenceArgs {
    /// The external store, if one is configured.
    async fn external(
        &self,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> anyhow::Result<Option<Arc<dyn parley_presence::PresenceStore>>> {
        let Some(url) = &self.redis else {
            return Ok(None);
        };
        let store =
            parley_presence::RedisPresence::connect(url, &self.redis_prefix, shutdown.clone())
                .await
                .with_context(|| format!("connecting to Redis at {}", redacted(url)))?;
        info!(url = %redacted(url), "presence kept in Redis");
        Ok(Some(store))
    }

    async fn source(
        &self,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> anyhow::Result<parley_gateway::service::PresenceSource> {
        Ok(match self.external(shutdown).await? {
            Some(s) => parley_gateway::service::PresenceSource::Store(s),
            None => parley_gateway::service::PresenceSource::Log,
        })
    }

    /// The store to read presence from: Redis, or else the presence topic.
    async fn store(
        &self,
        log: &Arc<dyn EventLog>,
        topic: &str,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> anyhow::Result<Arc<dyn parley_presence::PresenceStore>> {
        presence_store(self.external(shutdown).await?, log, topic, shutdown).await
    }
}

/// `url` with the password of its user info (`redis://user:password@host`) replaced by
/// `***`, for logs and errors.
pub fn redacted(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_string();
    };
    let user_info = &rest[..at];
    let user = user_info.split(':').next().unwrap_or_default();
    let hidden = if user_info.contains(':') || !user.is_empty() {
        // `redis://secret@host` puts the password where a user name would be.
        if user_info.contains(':') {
            format!("{user}:***")
        } else {
            "***".to_string()
        }
    } else {
        String::new()
    };
    format!("{}{hidden}{}", &url[..scheme_end], &rest[at..])
}

/// The store presence is read from: `external` (Redis) if given, else the presence topic.
async fn presence_store(
    external: Option<Arc<dyn parley_presence::PresenceStore>>,
    log: &Arc<dyn EventLog>,
    topic: &str,
    shutdown: &tokio_util::sync::CancellationToken,
) -> anyhow::Result<Arc<dyn parley_presence::PresenceStore>> {
    if let Some(s) = external {
        return Ok(s);
    }
    let store = parley_presence::LogPresence::follow(
        log.clone(),
        topic,
        Duration::from_secs(30),
        shutdown.clone(),
    )
    .await
    .with_context(|| format!("reading presence from {topic}"))?;
    Ok(store)
}

impl ClientArgs {
    fn gateway_config(&self, gateway_id: i32, log: &LogArgs) -> anyhow::Result<GatewayConfig> {
        let secret = match (&self.jwt_secret, self.dev_auth) {
            (Some(s), _) => long_enough("PARLEY_JWT_SECRET", s)?,
            (_, true) => {
                warn!("PARLEY_JWT_SECRET is not set: using a random secret; only tokens from /v1/dev/token work");
                random_secret()
            }
            _ => anyhow::bail!(
                "set PARLEY_JWT_SECRET (or --jwt-secret), or run with --dev-auth for local use"
            ),
        };
        let mut c = GatewayConfig::new(gateway_id, log.settings().names(), secret);
        c.dev_auth = self.dev_auth;
        c.heartbeat = Duration::from_secs(self.heartbeat_s.max(1));
        c.presence_ttl = c.heartbeat * 3;
        c.ping_interval = Duration::from_secs(self.ping_interval_s.max(1));
        c.idle_timeout = c.ping_interval * 3;
        c.write_timeout = Duration::from_secs(self.write_timeout_s.max(1));
        c.presence_group_limit = self.presence_group_limit;
        c.sync_page = self.sync_page;
        c.limits = self.rates.config();
        Ok(c)
    }
}

impl GatewayArgs {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let mut config = self.client.gateway_config(self.gateway_id, &self.log)?;
        config.ready_lag = self.ops.ready_lag;
        config.webhook_targets = self.targets.targets(false);
        let log = connect(&self.log, None).await?;
        let shutdown = crate::shutdown::on_signal();
        let views = views_of(
            self.projector.as_deref(),
            &log,
            &self.log,
            &self.ops,
            &shutdown,
        )
        .await?;
        let presence = self.client.presence.source(&shutdown).await?;
        let listener = bind(self.http).await?;
        parley_gateway::run(config, log, views, presence, listener, shutdown).await?;
        Ok(ExitCode::SUCCESS)
    }
}

/// Options of the push role.
#[derive(Debug, Clone, Args)]
pub struct PushOptions {
    /// HMAC-SHA256 key of the X-Parley-Signature header on every webhook (at least 32
    /// bytes; `parley dev` makes a random one when unset).
    #[arg(long, env = "PARLEY_PUSH_SECRET", hide_env_values = true)]
    push_secret: Option<String>,
    /// A conversation's messages within this window become one notification (ms).
    #[arg(long, env = "PARLEY_PUSH_COLLAPSE_MS", default_value_t = 2_000)]
    push_collapse_ms: u64,
    /// Attempts of one delivery before it is dead-lettered.
    #[arg(long, env = "PARLEY_PUSH_ATTEMPTS", default_value_t = 8)]
    push_attempts: u32,
    /// First retry delay (ms); each next one doubles, with jitter, up to --push-retry-max-ms.
    #[arg(long, env = "PARLEY_PUSH_RETRY_MS", default_value_t = 200)]
    push_retry_ms: u64,
    #[arg(long, env = "PARLEY_PUSH_RETRY_MAX_MS", default_value_t = 10_000)]
    push_retry_max_ms: u64,
    /// Consecutive failures that open an endpoint's circuit breaker.
    #[arg(long, env = "PARLEY_PUSH_BREAKER_FAILURES", default_value_t = 5)]
    push_breaker_failures: u32,
    /// How long an open circuit refuses before one trial (ms).
    #[arg(long, env = "PARLEY_PUSH_BREAKER_OPEN_MS", default_value_t = 30_000)]
    push_breaker_open_ms: u64,
    /// How long one webhook request may take (ms).
    #[arg(long, env = "PARLEY_PUSH_TIMEOUT_MS", default_value_t = 5_000)]
    push_timeout_ms: u64,
    /// How long a notification may wait for its endpoint in all before it is
    /// dead-lettered (s).
    #[arg(long, env = "PARLEY_PUSH_GIVE_UP_S", default_value_t = 300)]
    push_give_up_s: u64,
    /// Webhook requests in flight at once, for all users.
    #[arg(long, env = "PARLEY_PUSH_IN_FLIGHT", default_value_t = 64)]
    push_in_flight: usize,
    /// Webhook requests of one user in flight at once (their share of --push-in-flight).
    #[arg(long, env = "PARLEY_PUSH_PER_USER_IN_FLIGHT", default_value_t = 4)]
    push_per_user_in_flight: usize,
    /// Notifications of one user under way at once (waiting on retries); past it their
    /// further notifications are dropped until some end.
    #[arg(long, env = "PARLEY_PUSH_PER_USER_PENDING", default_value_t = 64)]
    push_per_user_pending: usize,
}

impl PushOptions {
    fn config(
        &self,
        settings: &parley_sequencer::TopicSettings,
        dev: bool,
    ) -> anyhow::Result<parley_push::PushConfig> {
        let secret = match &self.push_secret {
            Some(s) => long_enough("PARLEY_PUSH_SECRET", s)?.into_bytes(),
            None if dev => {
                warn!("PARLEY_PUSH_SECRET is not set: webhooks are signed with a random key that receivers cannot check");
                random_secret().into_bytes()
            }
            None => anyhow::bail!(
                "set PARLEY_PUSH_SECRET (or --push-secret), at least {MIN_SECRET} bytes: webhooks are signed with it"
            ),
        };
        let mut c = parley_push::PushConfig::new(
            settings.names(),
            format!("{}push", settings.prefix),
            secret,
        );
        c.collapse_window = Duration::from_millis(self.push_collapse_ms);
        c.backoff = parley_push::backoff::Backoff {
            base: Duration::from_millis(self.push_retry_ms.max(1)),
            max: Duration::from_millis(self.push_retry_max_ms.max(self.push_retry_ms.max(1))),
            attempts: self.push_attempts.max(1),
        };
        c.breaker_failures = self.push_breaker_failures.max(1);
        c.breaker_open = Duration::from_millis(self.push_breaker_open_ms);
        c.request_timeout = Duration::from_millis(self.push_timeout_ms.max(1));
        c.give_up_after = Duration::from_secs(self.push_give_up_s.max(1));
        c.in_flight = self.push_in_flight.max(1);
        c.per_user_in_flight = self.push_per_user_in_flight.clamp(1, c.in_flight);
        c.per_user_pending = self.push_per_user_pending.max(1);
        Ok(c)
    }
}

/// Where push webhooks may go.
#[derive(Debug, Clone, Args)]
pub struct WebhookTargetArgs {
    /// Hosts webhooks may go to whatever they resolve to (comma-separated names or
    /// addresses, e.g. the relay to APNs/FCM on your own network). Any other host must be
    /// a public address: loopback, link-local (cloud metadata), private and reserved
    /// addresses are refused at registration and at every connection.
    #[arg(long, env = "PARLEY_PUSH_ALLOW_HOSTS", value_delimiter = ',')]
    push_allow_hosts: Vec<String>,
}

impl WebhookTargetArgs {
    /// The policy of a role; `dev` (one machine) allows loopback too, with a warning.
    pub fn targets(&self, dev: bool) -> parley_push::WebhookTargets {
        if dev {
            warn!("parley dev: push webhooks may go to loopback addresses (this machine); a deployment refuses them");
        }
        parley_push::WebhookTargets::new(self.push_allow_hosts.iter().cloned(), dev)
    }
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// Address of /metrics, /healthz, /readyz and /v1/stats.
    #[arg(long, env = "PARLEY_PUSH_HTTP", default_value = "127.0.0.1:8095")]
    http: SocketAddr,
    /// One projector's query API, for badges (unread counts). Without it, the replicas
    /// announced in the directory topic are used.
    #[arg(long, env = "PARLEY_PROJECTOR_URL")]
    projector: Option<String>,
    #[command(flatten)]
    push: PushOptions,
    #[command(flatten)]
    targets: WebhookTargetArgs,
    #[command(flatten)]
    presence: PresenceArgs,
    #[command(flatten)]
    ops: OpsArgs,
    #[command(flatten)]
    log: LogArgs,
}

impl PushArgs {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let mut config = self.push.config(&self.log.settings(), false)?;
        config.ready_lag = self.ops.ready_lag;
        config.targets = self.targets.targets(false);
        let log = connect(&self.log, None).await?;
        let shutdown = crate::shutdown::on_signal();
        let views = views_of(
            self.projector.as_deref(),
            &log,
            &self.log,
            &self.ops,
            &shutdown,
        )
        .await?;
        let presence = self
            .presence
            .store(&log, &config.topics.presence, &shutdown)
            .await?;
        let listener = bind(self.http).await?;
        parley_push::run(config, log, Some(views), presence, Some(listener), shutdown).await?;
        Ok(ExitCode::SUCCESS)
    }
}

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Address clients connect to.
    #[arg(long, env = "PARLEY_HTTP", default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// Also serve the projector's query API here.
    #[arg(long)]
    projector_http: Option<SocketAddr>,
    /// Where the RocksDB views live.
    #[arg(long, env = "PARLEY_DATA_DIR", default_value = "parley-data/projector")]
    data_dir: PathBuf,
    /// Where the embedded log lives, when no `--log` is given.
    #[arg(long, env = "PARLEY_LOG_DIR", default_value = "parley-data/log")]
    log_dir: PathBuf,
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    push: PushOptions,
    #[command(flatten)]
    targets: WebhookTargetArgs,
    #[command(flatten)]
    ops: OpsArgs,
    #[command(flatten)]
    log: LogArgs,
}

impl DevArgs {
    /// Every role in this process: the topics (created if missing), a projector, a
    /// fanout-worker and gateway 0, sharing one connection to the log.
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let mut gateway_config = self.client.gateway_config(0, &self.log)?;
        gateway_config.ready_lag = self.ops.ready_lag;
        let service_token = match (self.ops.token()?, self.projector_http) {
            (Some(t), _) => t,
            (None, Some(addr)) => {
                warn!(%addr, "PARLEY_SERVICE_TOKEN is not set: the projector API there takes a random token no other process knows");
                random_secret()
            }
            (None, None) => random_secret(),
        };
        let (log, log_said) = match (&self.log.url, self.log.embedded_dir()?) {
            (None, _) => (
                open_embedded(self.log_dir.clone(), &self.log.settings().spec()).await?,
                format!(
                    "embedded, in {} (a broker instead: --log kafka://HOST:PORT)",
                    self.log_dir.display()
                ),
            ),
            (Some(_), Some(dir)) => (
                open_embedded(dir.clone(), &self.log.settings().spec()).await?,
                format!("embedded, in {}", dir.display()),
            ),
            (Some(url), None) => (connect(&self.log, None).await?, url.clone()),
        };
        let shutdown = crate::shutdown::on_signal();
        let listener = bind(self.http).await?;
        info!(http = %self.http, log = %log_said, "parley dev: every role in one process");
        eprintln!("{}", self.banner(&log_said));
        let presence = self.client.presence.external(&shutdown).await?;
        let mut push = self.push.config(&self.log.settings(), true)?;
        push.targets = self.targets.targets(true);
        gateway_config.webhook_targets = push.targets.clone();
        let all = AllRoles::start(AllRolesConfig {
            log,
            settings: self.log.settings(),
            data_dir: self.data_dir,
            gateway: gateway_config,
            listener,
            projector_http: self.projector_http,
            presence,
            push: Some(push),
            service_token,
            shutdown,
        })
        .await?;
        all.wait().await?;
        Ok(ExitCode::SUCCESS)
    }
}

impl DevArgs {
    /// What `parley dev` runs, and how to start talking to it.
    fn banner(&self, log: &str) -> String {
        let base = format!("http://{}", self.http);
        let tokens = if self.client.dev_auth {
            format!(
                "curl -s -XPOST {base}/v1/dev/token -H 'content-type: application/json' \\\n\
                 {:14}-d '{{\"user_id\":\"alice\"}}'",
                ""
            )
        } else {
            "HS256 JWTs signed with PARLEY_JWT_SECRET (or start with --dev-auth for \
             /v1/dev/token)"
                .to_string()
        };
        format!(
            "parley dev: every role in one process (gateway, fanout-worker, projector, push)\n\
             \x20 log:        {log}\n\
             \x20 views:      {}\n\
             \x20 web client: {base}/\n\
             \x20 API:        {base}/v1/… (WebSocket ws://{}/v1/ws; OpenAPI {base}/v1/openapi.json)\n\
             \x20 dev tokens: {tokens}\n\
             \x20 stop:       Ctrl-C (a second run resumes with everything)",
            self.data_dir.display(),
            self.http
        )
    }
}

/// What [`AllRoles::start`] needs.
pub struct AllRolesConfig {
    pub log: Arc<dyn EventLog>,
    pub settings: parley_sequencer::TopicSettings,
    pub data_dir: PathBuf,
    pub gateway: GatewayConfig,
    pub listener: TcpListener,
    pub projector_http: Option<SocketAddr>,
    /// An external presence store (Redis); else presence comes from the topic.
    pub presence: Option<Arc<dyn parley_presence::PresenceStore>>,
    /// Run the push role too.
    pub push: Option<parley_push::PushConfig>,
    /// The token of the projector API, when it is served (`projector_http`).
    pub service_token: String,
    pub shutdown: tokio_util::sync::CancellationToken,
}

/// Every role in one process (`parley dev`, `parley bench e2e`).
pub struct AllRoles {
    projector: Projector,
    fanout: tokio::task::JoinHandle<anyhow::Result<()>>,
    gateway: tokio::task::JoinHandle<anyhow::Result<()>>,
    push: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    shutdown: tokio_util::sync::CancellationToken,
}

impl AllRoles {
    pub async fn start(c: AllRolesConfig) -> anyhow::Result<AllRoles> {
        let reports = c.log.provision(&c.settings.spec()).await?;
        if let Some(bad) = reports.iter().find(|r| !r.is_ok()) {
            anyhow::bail!(
                "topic {} differs from the spec: {:?} (see `parley topics describe`)",
                bad.spec.name,
                bad.status
            );
        }
        let names = c.settings.names();
        // One set of readiness checks for the process: the gateway's /readyz has them all.
        let health = c.gateway.health.clone();
        let mut pc = ProjectorConfig::new(c.data_dir, &names);
        pc.health = health.clone();
        pc.ready_lag = c.gateway.ready_lag;
        pc.apply_delay = Duration::ZERO;
        // One machine, a local data dir: views of a log that was reset are rebuilt.
        pc.rebuild_if_unfit = true;
        let projector = Projector::start(pc, c.log.clone(), c.shutdown.clone()).await?;
        let views: Arc<dyn Views> = Arc::new(projector.views());
        if let Some(addr) = c.projector_http {
            let listener = bind(addr).await?;
            let app = parley_projector::http::router(
                views.clone(),
                Some(c.service_token.clone()),
                Some(projector.incarnation().to_string()),
            );
            let stop = c.shutdown.clone();
            tokio::spawn(async move { axum_serve(listener, app, stop).await });
        }
        let mut fanout = FanoutConfig::new(
            names,
            format!("{}fanout", c.settings.prefix),
            default_worker_id(),
        );
        fanout.health = health.clone();
        fanout.ready_lag = c.gateway.ready_lag;
        let fanout = tokio::spawn(parley_fanout::run(
            fanout,
            c.log.clone(),
            Some(views.clone()),
            c.shutdown.clone(),
        ));
        let push = match c.push {
            Some(mut config) => {
                config.health = health.clone();
                config.ready_lag = c.gateway.ready_lag;
                let store = presence_store(
                    c.presence.clone(),
                    &c.log,
                    &config.topics.presence,
                    &c.shutdown,
                )
                .await?;
                Some(tokio::spawn(parley_push::run(
                    config,
                    c.log.clone(),
                    Some(views.clone()),
                    store,
                    None,
                    c.shutdown.clone(),
                )))
            }
            None => None,
        };
        let source = match c.presence {
            Some(s) => parley_gateway::service::PresenceSource::Store(s),
            None => parley_gateway::service::PresenceSource::Log,
        };
        let gateway = tokio::spawn(parley_gateway::run(
            c.gateway,
            c.log,
            views,
            source,
            c.listener,
            c.shutdown.clone(),
        ));
        Ok(AllRoles {
            projector,
            fanout,
            gateway,
            push,
            shutdown: c.shutdown,
        })
    }

    /// Waits until every role has stopped (after shutdown, or when one fails).
    pub async fn wait(self) -> anyhow::Result<()> {
        let gateway = self.gateway.await;
        self.shutdown.cancel();
        let fanout = self.fanout.await;
        let push = match self.push {
            Some(p) => Some(p.await),
            None => None,
        };
        let projector = self.projector.join().await;
        gateway??;
        fanout??;
        if let Some(push) = push {
            push??;
        }
        projector?;
        Ok(())
    }

    pub fn stop(&self) {
        self.shutdown.cancel();
    }
}

async fn axum_serve(
    listener: TcpListener,
    app: axum::Router,
    stop: tokio_util::sync::CancellationToken,
) {
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await;
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn passwords_in_urls_are_redacted() {
        assert_eq!(
            redacted("redis://:s3cret@10.0.0.1:6379/0"),
            "redis://:***@10.0.0.1:6379/0"
        );
        assert_eq!(
            redacted("redis://parley:s3cret@host/"),
            "redis://parley:***@host/"
        );
        assert_eq!(redacted("rediss://s3cret@host"), "rediss://***@host");
        assert_eq!(
            redacted("redis://127.0.0.1:6379/"),
            "redis://127.0.0.1:6379/"
        );
        assert_eq!(redacted("not a url"), "not a url");
        assert!(!redacted("redis://u:p@ss@host/").contains("p@ss"));
    }
}
