//! `parley dev`: every role in one process ([`AllRoles`], also used by `parley bench`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use parley_fanout::FanoutConfig;
use parley_gateway::GatewayConfig;
use parley_projector::{Projector, ProjectorConfig, Views};
use parley_sequencer::kafka::LoopbackTopics;
use parley_sequencer::{EventLog, Handoff};
use tokio::net::TcpListener;
use tracing::{info, warn};

use super::common::{
    axum_serve, bind, connect_tuned, default_worker_id, open_embedded, random_secret, OpsArgs,
};
use super::gateway::ClientArgs;
use super::presence::presence_store;
use super::push::{PushOptions, WebhookTargetArgs};
use crate::cli::LogArgs;

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Address clients connect to.
    #[arg(long, env = "PARLEY_HTTP", default_value = "127.0.0.1:8080")]
    pub(super) http: SocketAddr,
    /// Also serve the projector's query API here.
    #[arg(long)]
    pub(super) projector_http: Option<SocketAddr>,
    /// Where the RocksDB views live.
    #[arg(long, env = "PARLEY_DATA_DIR", default_value = "parley-data/projector")]
    pub(super) data_dir: PathBuf,
    /// Keep no search index (`GET /v1/search` then answers 503).
    #[arg(long, env = "PARLEY_NO_SEARCH")]
    pub(super) no_search: bool,
    /// How long the views wait, after a record, for more to apply in the same write (ms;
    /// 0: each as it comes), when records come faster than two per wait; a quiet log's
    /// record is applied at once. They trail the log by at most this much more; no
    /// message waits for them on its way to its recipients.
    #[arg(long, env = "PARLEY_VIEWS_GATHER_MS", default_value_t = parley_projector::config::GATHER.as_millis() as u64, value_parser = clap::value_parser!(u64).range(0..=1000))]
    pub(super) views_gather_ms: u64,
    /// Where the embedded log lives, when no `--log` is given.
    #[arg(long, env = "PARLEY_LOG_DIR", default_value = "parley-data/log")]
    pub(super) log_dir: PathBuf,
    #[command(flatten)]
    pub(super) client: ClientArgs,
    #[command(flatten)]
    pub(super) push: PushOptions,
    #[command(flatten)]
    pub(super) targets: WebhookTargetArgs,
    #[command(flatten)]
    pub(super) ops: OpsArgs,
    #[command(flatten)]
    pub(super) log: LogArgs,
    /// Route the gateway's deliveries through the log's `deliveries` topic, as separate
    /// processes do, instead of handing them over in this process.
    #[arg(long, env = "PARLEY_DELIVERIES_VIA_LOG",
          value_parser = clap::builder::BoolishValueParser::new(),
          action = clap::ArgAction::SetTrue)]
    pub(super) deliveries_via_log: bool,
    /// On Kafka: let the router and the views of this process fetch the messages it
    /// appends from the broker, as separate processes do, instead of taking each from
    /// memory once the broker has acknowledged it.
    #[arg(long, env = "PARLEY_EVENTS_FROM_LOG",
          value_parser = clap::builder::BoolishValueParser::new(),
          action = clap::ArgAction::SetTrue)]
    pub(super) events_from_log: bool,
}

impl DevArgs {
    /// Every role in this process: the topics (created if missing), a projector, a
    /// fanout-worker and gateway 0, sharing one connection to the log.
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let mut gateway_config = self.client.gateway_config(0, &self.log)?;
        gateway_config.ready_lag = self.ops.ready_lag;
        let attachments_dir = self
            .data_dir
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join("attachments");
        self.client
            .attachments
            .apply(&mut gateway_config, Some(&attachments_dir))?;
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
                open_embedded(self.log_dir.clone(), &self.log).await?,
                format!(
                    "embedded, in {} (a broker instead: --log kafka://HOST:PORT)",
                    self.log_dir.display()
                ),
            ),
            (Some(_), Some(dir)) => (
                open_embedded(dir.clone(), &self.log).await?,
                format!("embedded, in {}", dir.display()),
            ),
            (Some(url), None) => {
                // What this process appends to `events`, its router and views take from
                // memory once acknowledged (docs/ARCHITECTURE.md, "One process").
                let events = self.log.settings().names().events;
                let loopback = !self.events_from_log;
                let log = connect_tuned(&self.log, |c| {
                    if loopback {
                        c.loopback = LoopbackTopics::Only(vec![events]);
                    }
                })
                .await?;
                (log, url.clone())
            }
        };
        let shutdown = crate::shutdown::on_signal();
        let listener = bind(self.http).await?;
        info!(http = %self.http, log = %log_said, "parley dev: every role in one process");
        eprintln!("{}", self.banner(&log_said));
        let presence = self.client.presence.external(&shutdown).await?;
        let mut push = self.push.config(&self.log.settings(), true)?;
        push.targets = self.targets.targets(true);
        gateway_config.webhook_targets = push.targets.clone();
        // An operator's token erases any user's content (only one the operator set).
        gateway_config.service_token = self.ops.token()?;
        let all = AllRoles::start(AllRolesConfig {
            log,
            settings: self.log.settings(),
            data_dir: self.data_dir,
            search: !self.no_search,
            views_gather: Duration::from_millis(self.views_gather_ms),
            gateway: gateway_config,
            listener,
            projector_http: self.projector_http,
            presence,
            push: Some(push),
            service_token,
            handoff: !self.deliveries_via_log,
            shutdown,
        })
        .await?;
        all.wait().await?;
        Ok(ExitCode::SUCCESS)
    }
}

impl DevArgs {
    /// What `parley dev` runs, and how to start talking to it.
    pub(super) fn banner(&self, log: &str) -> String {
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
    /// Keep a search index beside the views.
    pub search: bool,
    /// [`ProjectorConfig::gather`].
    pub views_gather: Duration,
    pub gateway: GatewayConfig,
    pub listener: TcpListener,
    pub projector_http: Option<SocketAddr>,
    /// An external presence store (Redis); else presence comes from the topic.
    pub presence: Option<Arc<dyn parley_presence::PresenceStore>>,
    /// Run the push role too.
    pub push: Option<parley_push::PushConfig>,
    /// The token of the projector API, when it is served (`projector_http`).
    pub service_token: String,
    /// Hand the gateway's slot of `deliveries` from the fanout-worker to the gateway in
    /// this process ([`Handoff`]) rather than through the log.
    pub handoff: bool,
    pub shutdown: tokio_util::sync::CancellationToken,
}

/// Every role in one process (`parley dev`, `parley bench e2e`).
pub struct AllRoles {
    pub(super) projector: Projector,
    pub(super) fanout: tokio::task::JoinHandle<anyhow::Result<()>>,
    pub(super) gateway: tokio::task::JoinHandle<anyhow::Result<()>>,
    pub(super) push: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    pub(super) shutdown: tokio_util::sync::CancellationToken,
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
        // The router and the reader of this gateway's slot live and die together here:
        // its routed copies go from one to the other in memory (docs/ARCHITECTURE.md,
        // "One process").
        let log: Arc<dyn EventLog> = match c.handoff {
            true => {
                let slot = [c.gateway.gateway_id];
                Arc::new(Handoff::new(c.log.clone(), &names.deliveries, &slot).await?)
            }
            false => c.log.clone(),
        };
        // One set of readiness checks for the process: the gateway's /readyz has them all.
        let health = c.gateway.health.clone();
        let mut pc = ProjectorConfig::new(c.data_dir, &names);
        pc.health = health.clone();
        pc.ready_lag = c.gateway.ready_lag;
        pc.apply_delay = Duration::ZERO;
        // One machine, a local data dir: views of a log that was reset are rebuilt.
        pc.rebuild_if_unfit = true;
        pc.search = c.search;
        pc.gather = c.views_gather;
        pc.kek = c.gateway.kek.clone();
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
            log.clone(),
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
            log,
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
