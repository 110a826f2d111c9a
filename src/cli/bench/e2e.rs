//! `parley bench e2e`: end-to-end latency of a chat message, send → `message` at the
//! peer, through real WebSockets, the gateway, the log, the fanout-worker and back.
//!
//! `--pairs` pairs of users each share a direct conversation; messages are sent
//! open-loop at `--rate` per second in total (each on schedule, whatever the others
//! do), round-robin over the pairs and both directions. Without `--gateway`, it runs
//! every role in this process on fresh topics.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use parley_client::{Api, Session};
use tokio::time::MissedTickBehavior;
use uuid::Uuid;

use super::report;
use super::stack::OwnStack;
use crate::cli::LogArgs;

#[derive(Debug, Args)]
pub struct E2eArgs {
    /// A running gateway with --dev-auth (default: run every role in this process).
    #[arg(long)]
    gateway: Option<String>,
    /// Messages per second, in total.
    #[arg(long, default_value_t = 500)]
    rate: u32,
    /// Seconds of measurement.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Pairs of users (direct conversations).
    #[arg(long, default_value_t = 10)]
    pairs: usize,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 100)]
    size: usize,
    #[command(flatten)]
    log: LogArgs,
}

impl E2eArgs {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        anyhow::ensure!(
            self.rate > 0 && self.pairs > 0,
            "--rate and --pairs must be positive"
        );
        OwnStack::measure_against(self.gateway.as_deref(), &self.log, async |base| {
            self.measure(base).await
        })
        .await
    }

    async fn measure(&self, base: &str) -> anyhow::Result<()> {
        println!("# parley bench e2e");
        println!("machine: {}", report::machine());
        println!(
            "gateway: {base}; log: {} (linger.ms={}, fetch.wait.max.ms={}); {} pairs, {} msg/s for {} s, {}-byte bodies",
            self.log.url(), self.log.linger_ms, self.log.fetch_wait_ms, self.pairs, self.rate, self.seconds, self.size
        );
        // Users, sessions and conversations.
        let run = &Uuid::new_v4().simple().to_string()[..6];
        let mut sessions = Vec::new();
        let mut convs = Vec::new();
        for i in 0..self.pairs {
            let (a, b) = (format!("bench-{run}-a{i}"), format!("bench-{run}-b{i}"));
            let ta = Api::dev_token(base, &a).await?;
            let tb = Api::dev_token(base, &b).await?;
            convs.push(Api::new(base, &ta).create_direct(&b).await?);
            let sa = Session::connect(base, &ta).await?;
            let sb = Session::connect(base, &tb).await?;
            anyhow::ensure!(
                sa.ready(Duration::from_secs(30)).await?
                    && sb.ready(Duration::from_secs(30)).await?,
                "sessions not live"
            );
            sessions.push((Arc::new(sa), Arc::new(sb)));
        }
        // Arrival times of every message, on the receivers' side.
        let sent_at: Arc<Mutex<HashMap<Uuid, Instant>>> = Arc::default();
        let e2e = Arc::new(Mutex::new(report::histogram()));
        let mut listeners = Vec::new();
        for (a, b) in &sessions {
            for s in [a, b] {
                let mut tap = s.tap();
                let (sent_at, e2e) = (sent_at.clone(), e2e.clone());
                listeners.push(tokio::spawn(async move {
                    while let Some((at, m)) = tap.recv().await {
                        let start = sent_at
                            .lock()
                            .ok()
                            .and_then(|mut s| s.remove(&m.message_id));
                        if let (Some(start), Ok(mut h)) = (start, e2e.lock()) {
                            report::record(&mut h, at.saturating_duration_since(start));
                        }
                    }
                }));
            }
        }
        // Warm up: one message each way per pair.
        for (i, (a, b)) in sessions.iter().enumerate() {
            a.send(&convs[i], &format!("warm-a-{run}"), "warm").await?;
            b.send(&convs[i], &format!("warm-b-{run}"), "warm").await?;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Ok(mut h) = e2e.lock() {
            h.reset();
        }

        let total = u64::from(self.rate) * self.seconds;
        let acks = Arc::new(Mutex::new(report::histogram()));
        let failures = Arc::new(Mutex::new(0u64));
        let body = "x".repeat(self.size);
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(self.rate)));
        tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
        eprintln!("sending {total} messages…");
        for n in 0..total {
            tick.tick().await;
            let pair = (n as usize) % self.pairs;
            let (sender, _) = &sessions[pair];
            let (s, from_a) = if (n / self.pairs as u64) % 2 == 0 {
                (sender.clone(), true)
            } else {
                (sessions[pair].1.clone(), false)
            };
            let cmid = format!("{run}-{n}-{from_a}");
            let id = parley_schemas::ids::message_id(s.user(), &cmid);
            let start = Instant::now();
            if let Ok(mut m) = sent_at.lock() {
                m.insert(id, start);
            }
            let rx = s.send_nowait(&convs[pair], &cmid, &body).await?;
            let (acks, failures) = (acks.clone(), failures.clone());
            tokio::spawn(async move {
                match rx.await {
                    Ok(Ok(_)) => {
                        if let Ok(mut h) = acks.lock() {
                            report::record(&mut h, start.elapsed());
                        }
                    }
                    _ => {
                        if let Ok(mut f) = failures.lock() {
                            *f += 1;
                        }
                    }
                }
            });
        }
        // Let the last ones arrive.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && sent_at.lock().map(|m| !m.is_empty()).unwrap_or(false) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let lost = sent_at.lock().map(|m| m.len()).unwrap_or(0);
        let e2e = e2e.lock().map(|h| report::summary(&h)).unwrap_or_default();
        let acks = acks.lock().map(|h| report::summary(&h)).unwrap_or_default();
        println!("send → message at the peer: {e2e}");
        println!("send → sent (acked by the log and confirmed by the views): {acks}");
        println!(
            "not delivered within 10 s: {lost}; failed sends: {}",
            failures.lock().map(|f| *f).unwrap_or(0)
        );
        for l in listeners {
            l.abort();
        }
        Ok(())
    }
}
