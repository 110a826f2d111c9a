//! `parley gateway`: the client-facing options (auth, timings, rate limits) and the role.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use parley_gateway::limits::{Rate, RateConfig};
use parley_gateway::GatewayConfig;
use tracing::warn;

use super::common::{bind, connect, long_enough, random_secret, views_of, OpsArgs};
use super::presence::PresenceArgs;
use super::push::WebhookTargetArgs;
use crate::cli::LogArgs;

#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// Address clients connect to.
    #[arg(long, env = "PARLEY_HTTP", default_value = "127.0.0.1:8080")]
    pub(super) http: SocketAddr,
    /// This gateway's slot: its partition of the deliveries topic (unique per gateway).
    #[arg(long, env = "PARLEY_GATEWAY_ID", default_value_t = 0)]
    pub(super) gateway_id: i32,
    /// One projector's query API. Without it, the projector replicas announced in the
    /// directory topic are used (every shard, with failover between replicas).
    #[arg(long, env = "PARLEY_PROJECTOR_URL")]
    pub(super) projector: Option<String>,
    #[command(flatten)]
    pub(super) client: ClientArgs,
    #[command(flatten)]
    pub(super) targets: WebhookTargetArgs,
    #[command(flatten)]
    pub(super) ops: OpsArgs,
    #[command(flatten)]
    pub(super) log: LogArgs,
}

/// Options of the client-facing side.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    #[command(flatten)]
    pub(super) kek: super::common::KekArgs,
    /// Serve POST /v1/dev/token, which hands a token to anyone: local use only.
    #[arg(long, env = "PARLEY_DEV_AUTH")]
    pub(super) dev_auth: bool,
    /// HS256 secret of client tokens (required unless --dev-auth).
    #[arg(long, env = "PARLEY_JWT_SECRET", hide_env_values = true)]
    pub(super) jwt_secret: Option<String>,
    /// Seconds between presence heartbeats.
    #[arg(long, env = "PARLEY_HEARTBEAT_S", default_value_t = 10)]
    pub(super) heartbeat_s: u64,
    /// Seconds between WebSocket pings; a socket silent for three of them (no pong, no
    /// frame) is closed as dead, and its user counts as offline.
    #[arg(long, env = "PARLEY_PING_INTERVAL_S", default_value_t = 15)]
    pub(super) ping_interval_s: u64,
    /// Seconds a single WebSocket write may take before the socket is closed as stuck.
    #[arg(long, env = "PARLEY_WRITE_TIMEOUT_S", default_value_t = 10)]
    pub(super) write_timeout_s: u64,
    /// Messages per sync_batch frame of a sync (1 to 500): smaller frames for slow links.
    #[arg(long, env = "PARLEY_SYNC_PAGE", default_value_t = parley_gateway::sync::PAGE,
          value_parser = clap::value_parser!(u32).range(1..=500))]
    pub(super) sync_page: u32,
    /// Members of groups up to this size see each other's presence; larger groups' members
    /// ask for it (presence_query).
    #[arg(long, env = "PARLEY_PRESENCE_GROUP_LIMIT", default_value_t = 50)]
    pub(super) presence_group_limit: usize,
    #[command(flatten)]
    pub(super) rates: RateArgs,
    #[command(flatten)]
    pub(super) presence: PresenceArgs,
    #[command(flatten)]
    pub(super) attachments: super::attachments::AttachmentArgs,
}

/// Rate limits of the client-facing side (a limited client gets `rate_limited` with
/// `retry_after_ms`, or HTTP 429 with `Retry-After`).
#[derive(Debug, Clone, Args)]
pub struct RateArgs {
    /// Messages a user may send per second (every session together); bursts of 4x.
    #[arg(long, env = "PARLEY_RATE_SENDS", default_value_t = RateConfig::default().sends.count)]
    pub(super) rate_sends_per_s: u32,
    /// Typing indicators a user may send per second; bursts of 5.
    #[arg(long, env = "PARLEY_RATE_TYPING", default_value_t = RateConfig::default().typing.count)]
    pub(super) rate_typing_per_s: u32,
    /// Conversations a user may create per minute; bursts of 20.
    #[arg(long, env = "PARLEY_RATE_CREATES", default_value_t = RateConfig::default().creates.count)]
    pub(super) rate_creates_per_min: u32,
    /// Member adds and removals a user may make per minute; bursts of 30.
    #[arg(long, env = "PARLEY_RATE_ADDS", default_value_t = RateConfig::default().adds.count)]
    pub(super) rate_adds_per_min: u32,
    /// Read units a user may spend per second; bursts of 4x. A history page, receipts or
    /// the inbox cost 1, a presence query 2 (20 with no session on this gateway), a long
    /// poll, a sync or the conversation list 5.
    #[arg(long, env = "PARLEY_RATE_READS", default_value_t = RateConfig::default().reads.count)]
    pub(super) rate_reads_per_s: u32,
    /// Settings changes a user may make per minute (devices, mutes, opt-ins, presence
    /// visibility, a group's roles and settings); bursts of 30.
    #[arg(long, env = "PARLEY_RATE_SETTINGS", default_value_t = RateConfig::default().settings.count)]
    pub(super) rate_settings_per_min: u32,
    /// Upload slots (POST /v1/uploads) a user may ask for per minute; bursts of 10.
    #[arg(long, env = "PARLEY_RATE_UPLOADS", default_value_t = RateConfig::default().uploads.count)]
    pub(super) rate_uploads_per_min: u32,
    /// WebSocket sessions a user may open per minute; bursts of 20.
    #[arg(long, env = "PARLEY_RATE_CONNECTS", default_value_t = RateConfig::default().connects.count)]
    pub(super) rate_connects_per_min: u32,
    /// WebSocket upgrades one IP address may make per minute; bursts of 200.
    #[arg(long, env = "PARLEY_RATE_UPGRADES_PER_IP", default_value_t = RateConfig::default().upgrades_per_ip.count)]
    pub(super) rate_upgrades_per_ip_per_min: u32,
    /// Frames one session may have in progress (history, sync, receipts, typing,
    /// presence queries); past it the client is told to slow down.
    #[arg(long, env = "PARLEY_FRAMES_IN_PROGRESS", default_value_t = RateConfig::default().frames_in_progress)]
    pub(super) frames_in_progress: usize,
}

impl RateArgs {
    /// The rates given, each with its default burst (sends: four seconds' worth).
    pub(super) fn config(&self) -> RateConfig {
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
            uploads: with(self.rate_uploads_per_min, d.uploads),
            frames_in_progress: self.frames_in_progress,
        }
    }
}

impl ClientArgs {
    pub(super) fn gateway_config(
        &self,
        gateway_id: i32,
        log: &LogArgs,
    ) -> anyhow::Result<GatewayConfig> {
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
        c.kek = self.kek.kek()?;
        Ok(c)
    }
}

impl GatewayArgs {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let mut config = self.client.gateway_config(self.gateway_id, &self.log)?;
        config.ready_lag = self.ops.ready_lag;
        config.service_token = self.ops.token()?;
        self.client.attachments.apply(&mut config, None)?;
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
