//! `parley bench resync`: how fast a client that was offline catches up.
//!
//! One user is in `--conversations` group conversations; while it is offline, another
//! user posts `--messages` messages spread evenly over them. Then the offline user
//! connects with no cursors and sends `sync`; the figure is messages received per second
//! from `sync` to `synced`. Each of `--rounds` rounds is a fresh session. Without
//! `--gateway`, every role runs in this process on fresh topics.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use parley_client::{Api, Session};
use uuid::Uuid;

use super::report;
use super::stack::OwnStack;
use crate::cli::LogArgs;

#[derive(Debug, Args)]
pub struct ResyncArgs {
    /// A running gateway with --dev-auth (default: run every role in this process).
    #[arg(long)]
    gateway: Option<String>,
    /// Conversations the offline user is in.
    #[arg(long, default_value_t = 100)]
    conversations: usize,
    /// Messages posted while it was offline, in total.
    #[arg(long, default_value_t = 10_000)]
    messages: usize,
    /// Catch-ups measured, each with a fresh session.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 100)]
    size: usize,
    #[command(flatten)]
    log: LogArgs,
}

impl ResyncArgs {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        anyhow::ensure!(
            self.conversations > 0 && self.messages > 0 && self.rounds > 0,
            "--conversations, --messages and --rounds must be positive"
        );
        OwnStack::measure_against(self.gateway.as_deref(), &self.log, async |base| {
            self.measure(base).await
        })
        .await
    }

    async fn measure(&self, base: &str) -> anyhow::Result<()> {
        println!("# parley bench resync");
        println!("machine: {}", report::machine());
        println!(
            "gateway: {base}; {} messages over {} conversations, {}-byte bodies, {} rounds",
            self.messages, self.conversations, self.size, self.rounds
        );
        let run = &Uuid::new_v4().simple().to_string()[..6];
        let (writer, reader) = (format!("bench-{run}-w"), format!("bench-{run}-r"));
        let tw = Api::dev_token(base, &writer).await?;
        let tr = Api::dev_token(base, &reader).await?;
        let api = Api::new(base, &tw);
        let mut convs = Vec::with_capacity(self.conversations);
        for i in 0..self.conversations {
            convs.push(api.create_group(&format!("g{i}"), &[&reader]).await?);
        }

        eprintln!(
            "posting {} messages while {reader} is offline…",
            self.messages
        );
        let w = Session::connect(base, &tw).await?;
        anyhow::ensure!(w.ready(Duration::from_secs(30)).await?, "writer not live");
        let body = "x".repeat(self.size);
        let started = Instant::now();
        let mut inflight = std::collections::VecDeque::new();
        let mut last_seq: HashMap<String, i64> = HashMap::new();
        let mut settle = |conv: &str, sent: parley_client::session::Sent| {
            let e = last_seq.entry(conv.to_string()).or_insert(sent.seq);
            *e = (*e).max(sent.seq);
        };
        for n in 0..self.messages {
            let conv = &convs[n % convs.len()];
            let rx = w.send_nowait(conv, &format!("{run}-{n}"), &body).await?;
            inflight.push_back((conv, rx));
            if inflight.len() >= 1000 {
                if let Some((conv, rx)) = inflight.pop_front() {
                    settle(conv, rx.await??);
                }
            }
        }
        for (conv, rx) in inflight {
            settle(conv, rx.await??);
        }
        eprintln!(
            "posted in {:.1} s; waiting for the views…",
            started.elapsed().as_secs_f64()
        );
        // The views have them all once every conversation's last seq is there.
        let reader_api = Api::new(base, &tr);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let listed = reader_api.conversations().await?;
            let behind = listed
                .iter()
                .filter(|c| {
                    let id = c["conversation_id"].as_str().unwrap_or_default();
                    let have = c["last_seq"].as_i64().unwrap_or(-1);
                    last_seq.get(id).is_some_and(|want| have < *want)
                })
                .count();
            if listed.len() >= convs.len() && behind == 0 {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "the views never caught up");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        let mut rates = Vec::new();
        for round in 1..=self.rounds {
            let r = Session::connect(base, &tr).await?;
            anyhow::ensure!(r.ready(Duration::from_secs(30)).await?, "reader not live");
            let t0 = Instant::now();
            r.sync(Duration::from_secs(120)).await?;
            let took = t0.elapsed();
            let held: usize = convs.iter().map(|c| r.messages(c).len()).sum();
            anyhow::ensure!(
                held == self.messages,
                "round {round}: caught up {held} of {} messages",
                self.messages
            );
            let rate = held as f64 / took.as_secs_f64();
            println!(
                "round {round}: {held} messages in {:.1} ms: {:.0} messages/s",
                took.as_secs_f64() * 1000.0,
                rate
            );
            rates.push(rate);
            r.close().await;
        }
        rates.sort_by(|a, b| a.total_cmp(b));
        println!(
            "resync: median {:.0} messages/s (min {:.0}, max {:.0}) over {} rounds",
            rates[rates.len() / 2],
            rates[0],
            rates[rates.len() - 1],
            rates.len()
        );
        Ok(())
    }
}
