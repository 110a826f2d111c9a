//! `parley bench …`: load generators. They print their figures; `docs/benchmarks.md`
//! records them with the command and the machine.

mod append;
mod attachments;
mod e2e;
mod group;
mod presence;
mod push;
mod report;
mod resync;
mod search;
mod stack;

use std::process::ExitCode;

use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    which: Which,
}

#[derive(Debug, Subcommand)]
enum Which {
    /// Appends to the log: throughput with many in flight, and append→ack latency at a fixed rate.
    Append(append::AppendArgs),
    /// A chat message end to end: send → `message` at the peer, through every role.
    E2e(e2e::E2eArgs),
    /// Catch-up: a client offline for many messages syncs; messages per second.
    Resync(resync::ResyncArgs),
    /// A large group on the broadcast path: latency to every online member, deliveries
    /// per second at saturation, a direct conversation alongside, records per message.
    Group(group::GroupArgs),
    /// The push role: notifications delivered per second to a local webhook.
    Push(push::PushBenchArgs),
    /// Presence fanout: frames per second when many users with many contacts connect.
    Presence(presence::PresenceBenchArgs),
    /// Attachments: uploads per second and MiB/s through the slot API, and the latency a
    /// file adds to a message (against a running gateway with a store).
    Attachments(attachments::AttachmentsArgs),
    /// The search index, in process: the views' catch-up with search off and on, the
    /// index's rate, sizes per million messages.
    SearchIndex(search::SearchIndexArgs),
    /// Search against a running gateway: fills it, then queries at fixed rates with sends
    /// beside them (query latency, and send latency with and without the queries).
    Search(search::SearchArgs),
}

impl BenchArgs {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        match self.which {
            Which::Append(a) => a.run().await,
            Which::E2e(a) => a.run().await,
            Which::Resync(a) => a.run().await,
            Which::Group(a) => a.run().await,
            Which::Push(a) => a.run().await,
            Which::Presence(a) => a.run().await,
            Which::Attachments(a) => a.run().await,
            Which::SearchIndex(a) => a.run().await,
            Which::Search(a) => a.run().await,
        }
    }
}
