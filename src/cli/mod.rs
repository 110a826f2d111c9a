//! The command line: one subcommand per role or tool.

mod bench;
mod chaos;
mod log_args;
mod replay;
pub mod roles;
mod topics;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use log_args::LogArgs;

/// Parley: an event-sourced chat backend on Apache Kafka.
#[derive(Debug, Parser)]
#[command(name = "parley", version, about, propagate_version = true)]
pub struct Cli {
    /// How log lines are written to stderr: `text` for people, `json` (one object per
    /// line, with the span fields) for log pipelines.
    #[arg(
        long,
        global = true,
        env = "PARLEY_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create or inspect the topics of the log.
    Topics(topics::TopicsArgs),
    /// Print a topic as JSON lines, one decoded record per line.
    Replay(replay::ReplayArgs),
    /// Load generators whose figures go to docs/benchmarks.md.
    Bench(bench::BenchArgs),
    /// Crashes and pauses roles and brokers under chat load, then checks every acked message.
    ///
    /// Needs the 3-broker cluster of `scripts/kafka.sh cluster start`; `scripts/chaos.sh`
    /// starts it and runs this.
    Chaos(chaos::ChaosArgs),
    /// Every role in one process: projector, fanout-worker, gateway 0 and push.
    Dev(roles::DevArgs),
    /// The client-facing role: WebSocket and REST.
    Gateway(roles::GatewayArgs),
    /// Routes events to gateways, inboxes and push (a consumer group: run several).
    Fanout(roles::FanoutArgs),
    /// Builds the RocksDB views of the log and serves them.
    Projector(roles::ProjectorArgs),
    /// Sends push notifications (webhooks) for users who are away (a consumer group).
    Push(roles::PushArgs),
}

impl Cli {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        match self.command {
            Command::Topics(a) => a.run().await,
            Command::Replay(a) => a.run().await,
            Command::Bench(a) => a.run().await,
            Command::Chaos(a) => a.run().await,
            Command::Dev(a) => a.run().await,
            Command::Gateway(a) => a.run().await,
            Command::Fanout(a) => a.run().await,
            Command::Projector(a) => a.run().await,
            Command::Push(a) => a.run().await,
        }
    }
}

/// Writes to stdout; a closed pipe (`parley … | head`) is not an error worth a word.
pub fn print_stdout(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
}
