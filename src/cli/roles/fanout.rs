//! `parley fanout`: a fanout-worker of the consumer group on `events`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use parley_fanout::state::Limits;
use parley_fanout::FanoutConfig;

use super::common::{bind, connect_tuned, default_worker_id, views_of, OpsArgs};
use crate::cli::LogArgs;

#[derive(Debug, Args)]
pub struct FanoutArgs {
    /// One projector's query API, for taking partitions over quickly. Without it, the
    /// projector replicas announced in the directory topic are used; with none serving a
    /// partition, its state is rebuilt from the log.
    #[arg(long, env = "PARLEY_PROJECTOR_URL")]
    pub(super) projector: Option<String>,
    /// This worker's name (default: host-pid).
    #[arg(long, env = "PARLEY_WORKER_ID")]
    pub(super) worker_id: Option<String>,
    /// How soon a dead worker's partitions move to the others (ms).
    #[arg(long, env = "PARLEY_SESSION_TIMEOUT_MS", default_value_t = 10_000)]
    pub(super) session_timeout_ms: u32,
    /// Message ids remembered per partition to drop repeated sends.
    #[arg(long, env = "PARLEY_DEDUP_WINDOW", default_value_t = 20_000)]
    pub(super) dedup_window: usize,
    /// Groups of at least this many members are broadcast to every gateway slot, which
    /// finds its own members, instead of routed member by member (no inbox entries or
    /// push jobs per member).
    #[arg(long, env = "PARLEY_LARGE_GROUP", default_value_t = 1_000)]
    pub(super) large_group: usize,
    /// Typing indicators routed per large group and second, at most.
    #[arg(long, env = "PARLEY_LARGE_TYPING_PER_S", default_value_t = 2)]
    pub(super) large_typing_per_s: u32,
    /// How often routed offsets are committed (ms): a successor resumes from the last
    /// commit and routes again what came after it.
    #[arg(long, env = "PARLEY_COMMIT_INTERVAL_MS", default_value_t = 200)]
    pub(super) commit_interval_ms: u64,
    /// Sleep this many ms before warming each partition taken over (tests of slow
    /// takeovers only).
    #[arg(long, hide = true, default_value_t = 0)]
    pub(super) debug_warm_delay_ms: u64,
    /// Records held in memory, in all, for partitions being taken over; past a share of
    /// it a partition is paused (the worker keeps reading the others, and stays in the
    /// group however long the warm-up takes).
    #[arg(long, env = "PARLEY_HOLD_MAX", default_value_t = 50_000)]
    pub(super) hold_max: usize,
    /// How long the worker may go without asking the broker for records before the group
    /// takes its partitions away (ms).
    #[arg(long, env = "PARLEY_MAX_POLL_INTERVAL_MS", default_value_t = 300_000)]
    pub(super) max_poll_interval_ms: u32,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "PARLEY_FANOUT_HTTP", default_value = "127.0.0.1:8091")]
    pub(super) http: SocketAddr,
    #[command(flatten)]
    pub(super) ops: OpsArgs,
    #[command(flatten)]
    pub(super) log: LogArgs,
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
