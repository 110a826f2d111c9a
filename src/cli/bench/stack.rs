//! Every role in this process on fresh topics, for a benchmark run without `--gateway`.

use std::path::PathBuf;
use std::process::ExitCode;

use parley_gateway::GatewayConfig;
use uuid::Uuid;

use crate::cli::roles::{bind, connect, AllRoles, AllRolesConfig};
use crate::cli::LogArgs;

pub struct OwnStack {
    all: AllRoles,
    data: PathBuf,
    prefix: String,
    /// `http://127.0.0.1:port` of its gateway.
    pub base: String,
}

impl OwnStack {
    pub async fn start(log_args: &LogArgs) -> anyhow::Result<OwnStack> {
        let prefix = format!("bench-{}.", &Uuid::new_v4().simple().to_string()[..8]);
        let settings = parley_sequencer::TopicSettings {
            prefix: prefix.clone(),
            ..log_args.settings()
        };
        let log = connect(log_args, None).await?;
        let listener = bind("127.0.0.1:0".parse()?).await?;
        let base = format!("http://{}", listener.local_addr()?);
        let mut gateway =
            GatewayConfig::new(0, settings.names(), Uuid::new_v4().simple().to_string());
        gateway.dev_auth = true;
        // A load generator is many users on one address, at rates no one person keeps up.
        gateway.limits = parley_gateway::limits::RateConfig::unlimited();
        let data = std::env::temp_dir().join(format!("parley-{prefix}projector"));
        let all = AllRoles::start(AllRolesConfig {
            log,
            settings,
            data_dir: data.clone(),
            search: true,
            views_gather: parley_projector::config::GATHER,
            gateway,
            listener,
            projector_http: None,
            presence: None,
            push: None,
            service_token: String::new(),
            // `parley bench group` counts the delivery records the router writes: they
            // must go to the log.
            handoff: false,
            shutdown: tokio_util::sync::CancellationToken::new(),
        })
        .await?;
        Ok(OwnStack {
            all,
            data,
            prefix,
            base,
        })
    }

    /// The topics of this stack.
    pub fn topics(&self) -> parley_sequencer::TopicNames {
        parley_sequencer::TopicSettings {
            prefix: self.prefix.clone(),
            ..Default::default()
        }
        .names()
    }

    /// Runs `measure` against `gateway` if given, else against a stack started here
    /// (and stopped afterwards, whatever `measure` returned).
    pub async fn measure_against(
        gateway: Option<&str>,
        log_args: &LogArgs,
        measure: impl AsyncFnOnce(&str) -> anyhow::Result<()>,
    ) -> anyhow::Result<ExitCode> {
        let (base, own) = match gateway {
            Some(url) => (url.to_string(), None),
            None => {
                let own = OwnStack::start(log_args).await?;
                (own.base.clone(), Some(own))
            }
        };
        let result = measure(&base).await;
        if let Some(own) = own {
            own.stop().await;
        }
        result?;
        Ok(ExitCode::SUCCESS)
    }

    pub async fn stop(self) {
        self.all.stop();
        let _ = self.all.wait().await;
        let _ = std::fs::remove_dir_all(self.data);
        eprintln!(
            "(topics under the prefix {} are left in the log)",
            self.prefix
        );
    }
}
