//! `parley topics create|describe`: apply or compare the topic spec of DESIGN.md §3.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use parley_sequencer::{EventLog, TopicReport, TopicSettings, TopicStatus};

use super::LogArgs;

#[derive(Debug, Args)]
pub struct TopicsArgs {
    #[command(subcommand)]
    action: Action,
    #[command(flatten)]
    log: LogArgs,
    /// Partitions of each keyed topic.
    #[arg(long, env = "PARLEY_PARTITIONS", default_value_t = 16, global = true)]
    partitions: i32,
    /// Gateway slots: partitions of the deliveries topic.
    #[arg(
        long,
        env = "PARLEY_GATEWAY_SLOTS",
        default_value_t = 64,
        global = true
    )]
    gateway_slots: i32,
    /// Replication factor of new topics (default: 3 on a cluster of 3 or more brokers,
    /// else 1, which is for a single development broker only).
    #[arg(long, env = "PARLEY_REPLICATION_FACTOR", global = true)]
    replication_factor: Option<i16>,
    /// min.insync.replicas (default: 2 when the replication factor is 3 or more, else 1).
    #[arg(long, env = "PARLEY_MIN_INSYNC_REPLICAS", global = true)]
    min_insync_replicas: Option<i16>,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Create the missing topics; report existing ones that differ from the spec.
    Create,
    /// Compare the topics with the spec, changing nothing.
    Describe,
}

impl TopicsArgs {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        for (what, v) in [
            ("--partitions", self.partitions),
            ("--gateway-slots", self.gateway_slots),
        ] {
            anyhow::ensure!(v > 0, "{what} must be at least 1, not {v}");
        }
        if let Some(rf) = self.replication_factor {
            anyhow::ensure!(rf > 0, "--replication-factor must be at least 1");
        }
        let log = self.log.connect().await?;
        let brokers = log.broker_count().await?;
        let replication_factor =
            self.replication_factor
                .unwrap_or(if brokers >= 3 { 3 } else { 1 });
        anyhow::ensure!(
            replication_factor as usize <= brokers.max(1),
            "--replication-factor {replication_factor} needs as many brokers; the log has {brokers}"
        );
        if replication_factor == 1 {
            eprintln!(
                "parley: replication factor 1: one broker's loss loses acknowledged messages \
                 (fine for a single development broker, never for production)"
            );
        }
        let settings = TopicSettings {
            partitions: self.partitions,
            gateway_slots: self.gateway_slots,
            replication_factor,
            min_insync_replicas: self.min_insync_replicas,
            ..self.log.settings()
        };
        let spec = settings.spec();
        let reports = match self.action {
            Action::Create => log.provision(&spec).await?,
            Action::Describe => log.describe(&spec).await?,
        };
        print_reports(&reports);
        let bad = reports.iter().filter(|r| !r.is_ok()).count();
        if bad > 0 {
            eprintln!(
                "parley: {bad} topic(s) missing or different from the spec; existing topics are never changed"
            );
            return Ok(ExitCode::FAILURE);
        }
        Ok(ExitCode::SUCCESS)
    }
}

fn print_reports(reports: &[TopicReport]) {
    use std::fmt::Write as _;
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{:<24} {:>10} {:>3}  {:<10} {:<36} status",
        "topic", "partitions", "rf", "cleanup", "retention.ms"
    );
    for r in reports {
        let s = &r.spec;
        let status = match &r.status {
            TopicStatus::Created => "created".to_string(),
            TopicStatus::Matches => "ok (unchanged)".to_string(),
            TopicStatus::Missing => "MISSING".to_string(),
            TopicStatus::Mismatch(p) => format!("MISMATCH: {}", p.join("; ")),
        };
        let partitions = match r.partitions {
            Some(n) if n != s.partitions => format!("{n} (≠{})", s.partitions),
            Some(n) => n.to_string(),
            None => format!("({})", s.partitions),
        };
        let get = |k: &str| s.configs.get(k).cloned().unwrap_or_else(|| "-".into());
        let _ = writeln!(
            text,
            "{:<24} {:>10} {:>3}  {:<10} {:<36} {status}",
            s.name,
            partitions,
            s.replication_factor,
            get("cleanup.policy"),
            get("retention.ms"),
        );
    }
    super::print_stdout(&text);
}
