//! `parley bench presence`: what presence costs when many people arrive at once.
//!
//! Against a running gateway with `--dev-auth` (e.g. `parley dev`): `--users` users in
//! groups of `--group` (each user has group−1 contacts, all within the presence limit)
//! connect over `--connect-seconds`, spread evenly. Every `presence` frame any of them
//! receives is counted per second, until `--settle-seconds` after the last connection.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use futures::{StreamExt, TryStreamExt};
use parley_client::Api;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::report;

#[derive(Debug, Args)]
pub struct PresenceBenchArgs {
    /// The gateway (run with --dev-auth).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    gateway: String,
    #[arg(long, default_value_t = 10_000)]
    users: usize,
    /// Members per group: each user has this many minus one contacts.
    #[arg(long, default_value_t = 50)]
    group: usize,
    /// Seconds over which the users connect.
    #[arg(long, default_value_t = 10)]
    connect_seconds: u64,
    /// Seconds counted after the last connection.
    #[arg(long, default_value_t = 10)]
    settle_seconds: u64,
}

impl PresenceBenchArgs {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        anyhow::ensure!(
            self.users > 0 && self.group > 1,
            "--users > 0 and --group > 1"
        );
        let run = &uuid::Uuid::new_v4().simple().to_string()[..6];
        let users: Vec<String> = (0..self.users).map(|i| format!("p{run}-{i}")).collect();
        println!("# parley bench presence");
        println!("machine: {}", report::machine());
        println!(
            "gateway: {}, {} users in groups of {} ({} contacts each), connecting over {} s",
            self.gateway,
            self.users,
            self.group,
            self.group - 1,
            self.connect_seconds
        );
        let base = self.gateway.trim_end_matches('/').to_string();
        let tokens: Vec<String> = futures::stream::iter(users.iter().map(|u| {
            let base = base.clone();
            async move { Api::dev_token(&base, u).await }
        }))
        .buffered(32)
        .try_collect()
        .await?;
        let groups: Vec<&[String]> = users.chunks(self.group).collect();
        futures::stream::iter(groups.iter().enumerate().map(|(k, members)| {
            let api = Api::new(&base, &tokens[k * self.group]);
            async move {
                let others: Vec<&str> = members[1..].iter().map(String::as_str).collect();
                api.create_group(&format!("g{k}"), &others).await
            }
        }))
        .buffered(8)
        .try_collect::<Vec<_>>()
        .await?;
        eprintln!(
            "  {} users and {} groups made; connecting",
            users.len(),
            groups.len()
        );

        let seconds = (self.connect_seconds + self.settle_seconds + 1) as usize;
        let per_second: Arc<Vec<AtomicU64>> =
            Arc::new((0..seconds + 60).map(|_| AtomicU64::new(0)).collect());
        let connected = Arc::new(AtomicU64::new(0));
        let per_user: Arc<Vec<AtomicU64>> =
            Arc::new((0..self.users).map(|_| AtomicU64::new(0)).collect());
        let failed = Arc::new(AtomicU64::new(0));
        let stop = CancellationToken::new();
        let url = format!("{}/v1/ws", base.replacen("http://", "ws://", 1));
        let started = Instant::now();
        let gap = Duration::from_secs(self.connect_seconds).as_secs_f64() / self.users as f64;
        for (i, token) in tokens.into_iter().enumerate() {
            let at = started + Duration::from_secs_f64(gap * i as f64);
            let (url, per_second, per_user, connected, failed, stop) = (
                url.clone(),
                per_second.clone(),
                per_user.clone(),
                connected.clone(),
                failed.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                tokio::time::sleep_until(at.into()).await;
                let Ok(mut req) = url.as_str().into_client_request() else {
                    failed.fetch_add(1, Ordering::Relaxed);
                    return;
                };
                if let Ok(v) = format!("Bearer {token}").parse() {
                    req.headers_mut().insert("authorization", v);
                }
                let Ok((ws, _)) = tokio_tungstenite::connect_async(req).await else {
                    failed.fetch_add(1, Ordering::Relaxed);
                    return;
                };
                connected.fetch_add(1, Ordering::Relaxed);
                let (_sink, mut stream) = ws.split();
                loop {
                    let msg = tokio::select! {
                        _ = stop.cancelled() => return,
                        m = stream.next() => m,
                    };
                    match msg {
                        Some(Ok(Message::Text(t)))
                            if t.as_str().starts_with("{\"type\":\"presence\"") =>
                        {
                            let s = started.elapsed().as_secs() as usize;
                            if let Some(c) = per_second.get(s) {
                                c.fetch_add(1, Ordering::Relaxed);
                            }
                            per_user[i].fetch_add(1, Ordering::Relaxed);
                        }
                        Some(Ok(_)) => {}
                        _ => return,
                    }
                }
            });
        }
        tokio::time::sleep(Duration::from_secs(seconds as u64)).await;
        stop.cancel();
        let counts: Vec<u64> = per_second
            .iter()
            .take(seconds)
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        println!(
            "connected: {} ({} failed)",
            connected.load(Ordering::Relaxed),
            failed.load(Ordering::Relaxed)
        );
        println!("presence frames per second: {counts:?}");
        let mut got: Vec<u64> = per_user.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        got.sort_unstable();
        println!(
            "frames per user: min {}, median {}, max {}; users with none: {}",
            got[0],
            got[got.len() / 2],
            got[got.len() - 1],
            got.iter().filter(|&&n| n == 0).count()
        );
        let peak = counts.iter().max().copied().unwrap_or(0);
        println!(
            "presence frames: {total} in all, peak {peak}/s, {:.0}/s over the {} s counted, {:.1} per user",
            total as f64 / seconds as f64,
            seconds,
            total as f64 / self.users as f64
        );
        println!(
            "(each user gets one frame per contact once its contacts are loaded, {} here, and one \
             more for each contact who comes or goes after that)",
            self.group - 1
        );
        Ok(ExitCode::SUCCESS)
    }
}
