//! `parley bench attachments`: uploads through the slot API against a running gateway's
//! store (slot + PUT of the bytes, many at once): uploads per second and MiB/s; then the
//! latency a message's attachments add, sends with one file and without alternated in
//! one run (send → `sent`).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use futures::StreamExt;
use parley_client::{Api, Session};
use uuid::Uuid;

use super::report;

#[derive(Debug, Args)]
pub struct AttachmentsArgs {
    /// A running gateway with --dev-auth and an attachment store (PARLEY_ATTACHMENTS).
    #[arg(long)]
    gateway: String,
    /// Files uploaded for the throughput figure.
    #[arg(long, default_value_t = 200)]
    uploads: usize,
    /// Their size in bytes.
    #[arg(long, default_value_t = 256 * 1024)]
    size: usize,
    /// Uploads in flight at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Messages sent for the latency figure (half with a file, half without).
    #[arg(long, default_value_t = 200)]
    messages: usize,
}

impl AttachmentsArgs {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        anyhow::ensure!(
            self.uploads > 0 && self.size > 0 && self.concurrency > 0 && self.messages > 1,
            "--uploads, --size, --concurrency must be positive and --messages at least 2"
        );
        let base = self.gateway.trim_end_matches('/').to_string();
        println!("# parley bench attachments");
        println!("machine: {}", report::machine());
        let run = &Uuid::new_v4().simple().to_string()[..6];
        let (a, b) = (format!("bench-{run}-a"), format!("bench-{run}-b"));
        let ta = Api::dev_token(&base, &a).await?;
        let _ = Api::dev_token(&base, &b).await?;
        let api = Arc::new(Api::new(&base, &ta));
        let conv = api.create_direct(&b).await?;

        // Throughput: slot + PUT, `concurrency` at once.
        println!(
            "gateway: {base}; {} uploads of {} bytes, {} at once",
            self.uploads, self.size, self.concurrency
        );
        let bytes: Vec<u8> = (0..self.size).map(|i| (i % 251) as u8).collect();
        let mut latency = report::histogram();
        let started = Instant::now();
        let results: Vec<anyhow::Result<Duration>> = futures::stream::iter(0..self.uploads)
            .map(|i| {
                let (api, conv, bytes) = (api.clone(), conv.clone(), bytes.clone());
                async move {
                    let t = Instant::now();
                    api.upload(
                        &conv,
                        &format!("f{i}.bin"),
                        "application/octet-stream",
                        bytes,
                    )
                    .await?;
                    Ok(t.elapsed())
                }
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        let took = started.elapsed();
        let mut failed = 0;
        for r in results {
            match r {
                Ok(d) => report::record(&mut latency, d),
                Err(e) => {
                    failed += 1;
                    if failed == 1 {
                        eprintln!("an upload failed: {e}");
                    }
                }
            }
        }
        let ok = self.uploads - failed;
        let secs = took.as_secs_f64();
        println!(
            "uploads: {ok} in {secs:.2} s = {:.1}/s, {:.1} MiB/s; failed {failed}; slot+PUT {}",
            ok as f64 / secs,
            (ok * self.size) as f64 / secs / (1024.0 * 1024.0),
            report::summary(&latency)
        );

        // Latency: sends with one (pre-uploaded) file and without, alternated.
        let session = Session::connect(&base, &ta).await?;
        anyhow::ensure!(
            session.ready(Duration::from_secs(30)).await?,
            "session not live"
        );
        let mut files = Vec::with_capacity(self.messages / 2 + 1);
        for i in 0..self.messages.div_ceil(2) {
            files.push(
                api.upload(
                    &conv,
                    &format!("m{i}.bin"),
                    "application/octet-stream",
                    vec![7; 10 * 1024],
                )
                .await?,
            );
        }
        let (mut plain, mut with) = (report::histogram(), report::histogram());
        for i in 0..self.messages {
            let t = Instant::now();
            if i % 2 == 0 {
                let file = files.pop().expect("one per message with a file");
                session
                    .send_files(&conv, &format!("w{i}"), "with a file", vec![file])
                    .await?;
                report::record(&mut with, t.elapsed());
            } else {
                session.send(&conv, &format!("p{i}"), "without").await?;
                report::record(&mut plain, t.elapsed());
            }
        }
        println!("send → sent without a file: {}", report::summary(&plain));
        println!("send → sent with one file:  {}", report::summary(&with));
        println!(
            "added by a file: p50 {:.2} ms, p99 {:.2} ms",
            (with.value_at_quantile(0.5) as f64 - plain.value_at_quantile(0.5) as f64) / 1000.0,
            (with.value_at_quantile(0.99) as f64 - plain.value_at_quantile(0.99) as f64) / 1000.0
        );
        Ok(ExitCode::SUCCESS)
    }
}
