//! `parley projector`: one replica of a shard of the views, with its query API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::common::{bind, connect, hostname, projector_config, OpsArgs};
use crate::cli::LogArgs;

#[derive(Debug, Args)]
pub struct ProjectorArgs {
    /// Address of the query API (internal: gateways and fanout-workers call it).
    #[arg(long, env = "PARLEY_PROJECTOR_HTTP", default_value = "127.0.0.1:8090")]
    pub(super) http: SocketAddr,
    /// Where the RocksDB views live.
    #[arg(long, env = "PARLEY_DATA_DIR", default_value = "parley-data/projector")]
    pub(super) data_dir: PathBuf,
    /// Partitions of events this projector owns (comma-separated; default all). Every
    /// projector with the same list is a replica of one shard.
    #[arg(long, value_delimiter = ',', conflicts_with = "shard")]
    pub(super) partitions: Vec<i32>,
    /// This projector's shard as I/N: it owns the partitions p with p % N == I (e.g.
    /// `--shard 0/2` the even ones). A shortcut for --partitions.
    #[arg(long, value_parser = parse_shard)]
    pub(super) shard: Option<(i32, i32)>,
    /// The URL of the query API as gateways and fanout-workers reach it, announced in
    /// the directory topic (default: http:// and --http, with the host name when
    /// --http listens on every address).
    #[arg(long, env = "PARLEY_ADVERTISE_URL")]
    pub(super) advertise: Option<String>,
    /// Slow every batch down by this many ms (tests of the read-your-log barrier only).
    #[arg(long, hide = true, default_value_t = 0)]
    pub(super) debug_apply_delay_ms: u64,
    /// How long the views wait, after a record, for more to apply in the same write (ms;
    /// 0: each as it comes), when records come faster than two per wait; a quiet log's
    /// record is applied at once. They trail the log by at most this much more; no
    /// message waits for them on its way to its recipients.
    #[arg(long, env = "PARLEY_VIEWS_GATHER_MS", default_value_t = parley_projector::config::GATHER.as_millis() as u64, value_parser = clap::value_parser!(u64).range(0..=1000))]
    pub(super) views_gather_ms: u64,
    /// Wipe the views in --data-dir and rebuild them from what the log holds now: for
    /// views that no longer fit the log (ahead of its end, or behind its start because
    /// retention deleted records they never applied).
    #[arg(long)]
    pub(super) rebuild: bool,
    /// Keep no search index: searches of this shard then answer 503 (an index kept
    /// before is deleted; turned on again, it is rebuilt from the views).
    #[arg(long, env = "PARLEY_NO_SEARCH")]
    pub(super) no_search: bool,
    #[command(flatten)]
    pub(super) ops: OpsArgs,
    #[command(flatten)]
    pub(super) kek: super::common::KekArgs,
    #[command(flatten)]
    pub(super) log: LogArgs,
}

pub(super) fn parse_shard(s: &str) -> Result<(i32, i32), String> {
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
        config.search = !self.no_search;
        config.gather = std::time::Duration::from_millis(self.views_gather_ms);
        config.kek = self.kek.kek()?;
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
