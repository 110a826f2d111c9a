//! `parley bench append`: the log's raw append path (200-byte records, acks=all).
//!
//! Phase 1 keeps `--in-flight` appends outstanding and reports appends/s.
//! Phase 2 is open-loop: it starts `--rate` appends per second on a fixed schedule,
//! whatever the previous ones are doing, and reports append→ack latency. With
//! `--followers N`, N readers follow the topic from its end meanwhile (as a
//! fanout-worker and a projector follow `events`), and it reports append→read latency;
//! with `--cpu-pid`, the CPU those processes used per append (the broker's, say), and
//! its own. The latency is a floor under any design that appends each message and reads
//! it back; the CPU is not (the followers do nothing with what they read and ask the
//! broker again sooner than a busy router or projector: about twice the fetches per
//! message, counted by `bench/one-to-one/kafka-requests.sh`), so it compares settings
//! with each other.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use futures::StreamExt;
use parley_sequencer::{EventLog, TopicSpec};
use tokio::time::MissedTickBehavior;

use super::report;
use crate::cli::LogArgs;

#[derive(Debug, Args)]
pub struct AppendArgs {
    /// Records in the throughput phase.
    #[arg(long, default_value_t = 300_000)]
    records: u64,
    /// Record size in bytes.
    #[arg(long, default_value_t = 200)]
    size: usize,
    /// Appends outstanding at once in the throughput phase.
    #[arg(long, default_value_t = 20_000)]
    in_flight: usize,
    /// Appends per second in the latency phase.
    #[arg(long, default_value_t = 1_000)]
    rate: u32,
    /// Seconds of the latency phase.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Distinct keys (conversations).
    #[arg(long, default_value_t = 10_000)]
    keys: u32,
    /// Partitions of the benchmark's own topic.
    #[arg(long, default_value_t = 16)]
    partitions: i32,
    /// Readers following the topic from its end during the latency phase.
    #[arg(long, default_value_t = 0)]
    followers: usize,
    /// Processes whose CPU (user + system, from /proc) is reported per append over the
    /// latency phase (repeatable; e.g. the broker's pid).
    #[arg(long)]
    cpu_pid: Vec<u32>,
    #[command(flatten)]
    log: LogArgs,
}

impl AppendArgs {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        anyhow::ensure!(
            self.rate > 0 && self.in_flight > 0 && self.keys > 0,
            "--rate, --in-flight and --keys must be positive"
        );
        let log = crate::cli::roles::connect(&self.log, None).await?;
        let topic = format!("{}bench.append", self.log.topic_prefix);
        let report = log
            .provision(&[TopicSpec::plain(&topic, self.partitions, 1)])
            .await?;
        anyhow::ensure!(
            report[0].is_ok(),
            "benchmark topic {topic}: {:?}",
            report[0].status
        );
        let payload = vec![b'x'; self.size];
        println!("# parley bench append");
        println!("machine: {}", report::machine());
        println!(
            "log: {} (linger.ms={}, acks=all, idempotent), topic {topic} ({} partitions), {}-byte records",
            self.log.url(), self.log.linger_ms, self.partitions, self.size
        );

        // Warm up connections and metadata.
        for i in 0..100u32 {
            log.append(&topic, &key(i, self.keys), Some(&payload))
                .await?;
        }

        self.throughput(&log, &topic, &payload).await?;
        self.latency(&log, &topic, &payload).await?;
        Ok(ExitCode::SUCCESS)
    }

    async fn throughput(
        &self,
        log: &Arc<dyn EventLog>,
        topic: &str,
        payload: &[u8],
    ) -> anyhow::Result<()> {
        eprintln!(
            "throughput: {} appends, {} in flight…",
            self.records, self.in_flight
        );
        let start = Instant::now();
        let mut lat = report::histogram();
        let mut done = 0u64;
        let mut failed = 0u64;
        let mut results = futures::stream::iter(0..self.records)
            .map(|i| {
                let log = log.clone();
                let k = key(i as u32, self.keys);
                async move {
                    let t = Instant::now();
                    let r = log.append(topic, &k, Some(payload)).await;
                    (r, t.elapsed())
                }
            })
            .buffer_unordered(self.in_flight);
        let mut last_report = Instant::now();
        while let Some((r, d)) = results.next().await {
            match r {
                Ok(_) => {
                    done += 1;
                    report::record(&mut lat, d);
                }
                Err(_) => failed += 1,
            }
            if last_report.elapsed() > Duration::from_secs(2) {
                eprintln!("  {done} acked…");
                last_report = Instant::now();
            }
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "throughput: {done} acked in {secs:.2} s = {:.0} appends/s ({:.1} MB/s payload), {failed} failed, {} in flight",
            done as f64 / secs,
            done as f64 * self.size as f64 / secs / 1e6,
            self.in_flight
        );
        println!("  append→ack under saturation: {}", report::summary(&lat));
        Ok(())
    }

    async fn latency(
        &self,
        log: &Arc<dyn EventLog>,
        topic: &str,
        payload: &[u8],
    ) -> anyhow::Result<()> {
        let total = u64::from(self.rate) * self.seconds;
        eprintln!(
            "latency: {} appends/s for {} s, {} followers…",
            self.rate, self.seconds, self.followers
        );
        let partitions: Vec<(i32, parley_sequencer::StartAt)> = (0..self.partitions)
            .map(|p| (p, parley_sequencer::StartAt::End))
            .collect();
        let mut followers = Vec::new();
        for _ in 0..self.followers {
            // Each stands for a reader every message passes (the router, the projector):
            // with --bulk-fetch-bytes they read in bulk, as those do.
            let mut records = log.read_bulk(topic, &partitions).await?;
            followers.push(tokio::spawn(async move {
                let mut lat = report::histogram();
                let mut seen = 0u64;
                while seen < total {
                    match tokio::time::timeout(Duration::from_secs(10), records.next()).await {
                        Ok(Some(Ok(r))) => {
                            seen += 1;
                            if let Some(sent) = r.value.as_deref().and_then(stamp_of) {
                                report::record(&mut lat, now_micros().saturating_sub(sent));
                            }
                        }
                        _ => break,
                    }
                }
                (seen, lat)
            }));
        }
        let cpu_before = cpu_seconds(&self.cpu_pid);
        let own_before = cpu_seconds(&[std::process::id()]);
        let started = Instant::now();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(self.rate)));
        tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
        for i in 0..total {
            tick.tick().await;
            let (log, tx, topic) = (log.clone(), tx.clone(), topic.to_string());
            let k = key(i as u32, self.keys);
            let mut payload = payload.to_vec();
            stamp(&mut payload);
            tokio::spawn(async move {
                let t = Instant::now();
                let r = log.append(&topic, &k, Some(&payload)).await;
                let _ = tx.send((r.is_ok(), t.elapsed()));
            });
        }
        drop(tx);
        let mut lat = report::histogram();
        let mut failed = 0;
        while let Some((ok, d)) = rx.recv().await {
            if ok {
                report::record(&mut lat, d);
            } else {
                failed += 1;
            }
        }
        println!(
            "latency at {} appends/s for {} s: {} ({failed} failed)",
            self.rate,
            self.seconds,
            report::summary(&lat)
        );
        for (i, f) in followers.into_iter().enumerate() {
            let (seen, lat) = f.await?;
            println!(
                "  follower {i}: read {seen} of {total}; append→read {}",
                report::summary(&lat)
            );
        }
        // This process: its producer, its followers, librdkafka's threads for them and
        // its own task per append (a client of the log beside the broker).
        if let (Some(before), Some(after)) = (own_before, cpu_seconds(&[std::process::id()])) {
            println!(
                "  CPU of this client (appends and followers): {:.3} ms per append",
                1000.0 * (after - before) / total as f64
            );
        }
        if let (Some(before), Some(after)) = (cpu_before, cpu_seconds(&self.cpu_pid)) {
            let secs = after - before;
            println!(
                "  CPU of pids {:?}: {:.2} s over {:.1} s = {:.1}% of a core, {:.3} ms per append",
                self.cpu_pid,
                secs,
                started.elapsed().as_secs_f64(),
                100.0 * secs / started.elapsed().as_secs_f64(),
                1000.0 * secs / total as f64
            );
        }
        Ok(())
    }
}

/// Writes the time now into the first 8 bytes of `payload` (microseconds since the epoch).
fn stamp(payload: &mut [u8]) {
    if let Some(head) = payload.get_mut(..8) {
        head.copy_from_slice(&(now_micros().as_micros() as u64).to_be_bytes());
    }
}

fn stamp_of(payload: &[u8]) -> Option<Duration> {
    Some(Duration::from_micros(u64::from_be_bytes(
        payload.get(..8)?.try_into().ok()?,
    )))
}

fn now_micros() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

/// CPU seconds of `pids` together; `None` with none given or one gone.
fn cpu_seconds(pids: &[u32]) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().try_fold(0.0, |sum, pid| {
        Some(sum + report::cpu_seconds_of(&pid.to_string())?)
    })
}

fn key(i: u32, keys: u32) -> Vec<u8> {
    format!("conversation-{}", i % keys).into_bytes()
}
