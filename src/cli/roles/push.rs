//! `parley push`: the push role's options, and where webhooks may go.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use tracing::warn;

use super::common::{bind, connect, long_enough, random_secret, views_of, OpsArgs, MIN_SECRET};
use super::presence::PresenceArgs;
use crate::cli::LogArgs;

/// Options of the push role.
#[derive(Debug, Clone, Args)]
pub struct PushOptions {
    /// HMAC-SHA256 key of the X-Parley-Signature header on every webhook (at least 32
    /// bytes; `parley dev` makes a random one when unset).
    #[arg(long, env = "PARLEY_PUSH_SECRET", hide_env_values = true)]
    pub(super) push_secret: Option<String>,
    /// A conversation's messages within this window become one notification (ms).
    #[arg(long, env = "PARLEY_PUSH_COLLAPSE_MS", default_value_t = 2_000)]
    pub(super) push_collapse_ms: u64,
    /// Attempts of one delivery before it is dead-lettered.
    #[arg(long, env = "PARLEY_PUSH_ATTEMPTS", default_value_t = 8)]
    pub(super) push_attempts: u32,
    /// First retry delay (ms); each next one doubles, with jitter, up to --push-retry-max-ms.
    #[arg(long, env = "PARLEY_PUSH_RETRY_MS", default_value_t = 200)]
    pub(super) push_retry_ms: u64,
    #[arg(long, env = "PARLEY_PUSH_RETRY_MAX_MS", default_value_t = 10_000)]
    pub(super) push_retry_max_ms: u64,
    /// Consecutive failures that open an endpoint's circuit breaker.
    #[arg(long, env = "PARLEY_PUSH_BREAKER_FAILURES", default_value_t = 5)]
    pub(super) push_breaker_failures: u32,
    /// How long an open circuit refuses before one trial (ms).
    #[arg(long, env = "PARLEY_PUSH_BREAKER_OPEN_MS", default_value_t = 30_000)]
    pub(super) push_breaker_open_ms: u64,
    /// How long one webhook request may take (ms).
    #[arg(long, env = "PARLEY_PUSH_TIMEOUT_MS", default_value_t = 5_000)]
    pub(super) push_timeout_ms: u64,
    /// How long a notification may wait for its endpoint in all before it is
    /// dead-lettered (s).
    #[arg(long, env = "PARLEY_PUSH_GIVE_UP_S", default_value_t = 300)]
    pub(super) push_give_up_s: u64,
    /// Webhook requests in flight at once, for all users.
    #[arg(long, env = "PARLEY_PUSH_IN_FLIGHT", default_value_t = 64)]
    pub(super) push_in_flight: usize,
    /// Webhook requests of one user in flight at once (their share of --push-in-flight).
    #[arg(long, env = "PARLEY_PUSH_PER_USER_IN_FLIGHT", default_value_t = 4)]
    pub(super) push_per_user_in_flight: usize,
    /// Notifications of one user under way at once (waiting on retries); past it their
    /// further notifications are dropped until some end.
    #[arg(long, env = "PARLEY_PUSH_PER_USER_PENDING", default_value_t = 64)]
    pub(super) push_per_user_pending: usize,
}

impl PushOptions {
    pub(super) fn config(
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
    pub(super) push_allow_hosts: Vec<String>,
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
    pub(super) http: SocketAddr,
    /// One projector's query API, for badges (unread counts). Without it, the replicas
    /// announced in the directory topic are used.
    #[arg(long, env = "PARLEY_PROJECTOR_URL")]
    pub(super) projector: Option<String>,
    #[command(flatten)]
    pub(super) push: PushOptions,
    #[command(flatten)]
    pub(super) targets: WebhookTargetArgs,
    #[command(flatten)]
    pub(super) presence: PresenceArgs,
    #[command(flatten)]
    pub(super) ops: OpsArgs,
    #[command(flatten)]
    pub(super) log: LogArgs,
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
