//! `parley bench group`: a large group on the broadcast path.
//!
//! One group of `--members` members, `--online` of them connected (round robin over the
//! gateways). Three figures:
//! 1. **latency**: group messages at `--rate` per second for `--seconds`, each timed from
//!    send until *every* online member holds it; meanwhile a direct conversation on
//!    the group's partition sends at `--direct-rate`, timed send → peer;
//! 2. **saturation**: group messages as fast as the log takes them (`--in-flight` at
//!    once) for `--saturate-seconds`: deliveries per second at the clients;
//! 3. **records per group message** appended to `deliveries`, `inbox` and `push`.
//!
//! Without `--gateway`, every role runs in this process on fresh topics.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use futures::future::join_all;
use parley_client::{Api, Session};
use parley_sequencer::partition::partition_for_key;
use parley_sequencer::{EventLog, TopicNames};
use tokio::time::MissedTickBehavior;
use uuid::Uuid;

use super::report;
use super::stack::OwnStack;
use crate::cli::roles::connect;
use crate::cli::LogArgs;

#[derive(Debug, Args)]
pub struct GroupArgs {
    /// Running gateways with --dev-auth (repeat the flag; default: every role in this
    /// process). Give --topic-prefix too, so that the bench can count records.
    #[arg(long)]
    gateway: Vec<String>,
    /// Members of the group.
    #[arg(long, default_value_t = 10_000)]
    members: usize,
    /// Members connected.
    #[arg(long, default_value_t = 2_000)]
    online: usize,
    /// Group messages per second in the latency phase.
    #[arg(long, default_value_t = 5)]
    rate: u32,
    /// Seconds of the latency phase.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Messages per second of the direct conversation on the group's partition.
    #[arg(long, default_value_t = 200)]
    direct_rate: u32,
    /// Seconds of the saturation phase (0: skip it).
    #[arg(long, default_value_t = 10)]
    saturate_seconds: u64,
    /// Group messages in flight at once in the saturation phase.
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    #[command(flatten)]
    log: LogArgs,
}

/// Who still has to receive each group message, and when it was sent.
#[derive(Default)]
struct Pending {
    waiting: HashMap<Uuid, (Instant, usize)>,
}

struct Taps {
    pending: Arc<Mutex<Pending>>,
    /// Send → held by every online member, per group message.
    all: Arc<Mutex<hdrhistogram::Histogram<u64>>>,
    /// Send → one member's copy, per delivery.
    each: Arc<Mutex<hdrhistogram::Histogram<u64>>>,
    deliveries: Arc<AtomicU64>,
    last_delivery: Arc<Mutex<Option<Instant>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Taps {
    fn start(sessions: &[Arc<Session>], conv: &str) -> Taps {
        let t = Taps {
            pending: Arc::default(),
            all: Arc::new(Mutex::new(report::histogram())),
            each: Arc::new(Mutex::new(report::histogram())),
            deliveries: Arc::default(),
            last_delivery: Arc::default(),
            tasks: Vec::new(),
        };
        let mut tasks = Vec::new();
        for s in sessions {
            let mut tap = s.tap();
            let (pending, all, each) = (t.pending.clone(), t.all.clone(), t.each.clone());
            let (count, last) = (t.deliveries.clone(), t.last_delivery.clone());
            let conv = conv.to_string();
            tasks.push(tokio::spawn(async move {
                while let Some((at, m)) = tap.recv().await {
                    if m.conversation_id != conv {
                        continue;
                    }
                    count.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut l) = last.lock() {
                        *l = Some(at);
                    }
                    let Ok(mut p) = pending.lock() else { continue };
                    let Some((start, left)) = p.waiting.get_mut(&m.message_id) else {
                        continue;
                    };
                    let took = at.saturating_duration_since(*start);
                    if let Ok(mut h) = each.lock() {
                        report::record(&mut h, took);
                    }
                    *left -= 1;
                    if *left == 0 {
                        p.waiting.remove(&m.message_id);
                        if let Ok(mut h) = all.lock() {
                            report::record(&mut h, took);
                        }
                    }
                }
            }));
        }
        Taps { tasks, ..t }
    }

    fn expect(&self, id: Uuid, receivers: usize) {
        if let Ok(mut p) = self.pending.lock() {
            p.waiting.insert(id, (Instant::now(), receivers));
        }
    }

    fn reset(&self) {
        for h in [&self.all, &self.each] {
            if let Ok(mut h) = h.lock() {
                h.reset();
            }
        }
        self.deliveries.store(0, Ordering::Relaxed);
    }

    async fn drain(&self, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            let left = self.pending.lock().map(|p| p.waiting.len()).unwrap_or(0);
            if left == 0 || Instant::now() > deadline {
                return left;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl GroupArgs {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        anyhow::ensure!(
            self.members >= 2 && self.online >= 2 && self.online <= self.members,
            "need 2 ≤ --online ≤ --members"
        );
        anyhow::ensure!(self.rate > 0, "--rate must be positive");
        let log = connect(&self.log, None).await?;
        if self.gateway.is_empty() {
            let own = OwnStack::start(&self.log).await?;
            let names = own.topics();
            let result = self
                .measure(std::slice::from_ref(&own.base), &*log, &names)
                .await;
            own.stop().await;
            result?;
        } else {
            let names = self.log.settings().names();
            self.measure(&self.gateway, &*log, &names).await?;
        }
        Ok(ExitCode::SUCCESS)
    }

    async fn measure(
        &self,
        gateways: &[String],
        log: &dyn EventLog,
        topics: &TopicNames,
    ) -> anyhow::Result<()> {
        println!("# parley bench group");
        println!("machine: {}", report::machine());
        println!(
            "gateways: {}; log: {}; {} members, {} online",
            gateways.join(" "),
            self.log.url(),
            self.members,
            self.online
        );
        let run = &Uuid::new_v4().simple().to_string()[..6];
        let users: Vec<String> = (0..self.members)
            .map(|i| format!("g{run}-{i:06}"))
            .collect();
        let base = &gateways[0];

        eprintln!("tokens for {} users…", self.online);
        let mut tokens = Vec::with_capacity(self.online);
        for chunk in users[..self.online].chunks(100) {
            let got = join_all(chunk.iter().map(|u| Api::dev_token(base, u))).await;
            for t in got {
                tokens.push(t?);
            }
        }
        let creator = Api::new(base, &tokens[0]);
        eprintln!("creating the group of {}…", self.members);
        // Requests stay under the gateway's body limit.
        let first: Vec<&str> = users[1..users.len().min(2_000)]
            .iter()
            .map(String::as_str)
            .collect();
        let conv = creator.create_group("bench", &first).await?;
        for chunk in users[users.len().min(2_000)..].chunks(2_000) {
            creator.add_members(&conv, chunk).await?;
            eprintln!("  {} members", (users.len().min(2_000) + chunk.len()));
        }

        eprintln!("connecting {} sessions…", self.online);
        let mut sessions: Vec<Arc<Session>> = Vec::with_capacity(self.online);
        for (i, chunk) in tokens.chunks(100).enumerate() {
            let got = join_all(chunk.iter().enumerate().map(|(j, t)| {
                let g = &gateways[(i * 100 + j) % gateways.len()];
                async move {
                    let s = Session::connect(g, t).await?;
                    anyhow::ensure!(s.ready(Duration::from_secs(60)).await?, "session not live");
                    Ok(s)
                }
            }))
            .await;
            for s in got {
                sessions.push(Arc::new(s?));
            }
            eprintln!("  {} connected", sessions.len());
        }
        let receivers = self.online - 1;
        let sender = sessions[0].clone();
        let taps = Taps::start(&sessions[1..], &conv);

        // A direct conversation in the group's partition.
        let partitions = log.partition_count(&topics.events).await?;
        let group_partition = partition_for_key(conv.as_bytes(), partitions);
        let (da, db, direct) = direct_on(base, run, partitions, group_partition).await?;
        let direct_lat = Arc::new(Mutex::new(report::histogram()));
        let direct_sent: Arc<Mutex<HashMap<Uuid, Instant>>> = Arc::default();
        let direct_tap = {
            let mut tap = db.tap();
            let (lat, sent) = (direct_lat.clone(), direct_sent.clone());
            tokio::spawn(async move {
                while let Some((at, m)) = tap.recv().await {
                    let start = sent.lock().ok().and_then(|mut s| s.remove(&m.message_id));
                    if let (Some(start), Ok(mut h)) = (start, lat.lock()) {
                        report::record(&mut h, at.saturating_duration_since(start));
                    }
                }
            })
        };

        // Warm up.
        for n in 0..3 {
            let cmid = format!("{run}-warm-{n}");
            taps.expect(
                parley_schemas::ids::message_id(sender.user(), &cmid),
                receivers,
            );
            sender.send(&conv, &cmid, "warm").await?;
        }
        taps.drain(Duration::from_secs(30)).await;
        taps.reset();
        let before = ends(log, topics).await?;

        // 1. Latency, with the direct conversation alongside.
        let total = u64::from(self.rate) * self.seconds;
        eprintln!(
            "latency: {total} group messages at {}/s, direct at {}/s…",
            self.rate, self.direct_rate
        );
        let direct_task = {
            let (da, direct, sent) = (da.clone(), direct.clone(), direct_sent.clone());
            let (rate, seconds, run) = (self.direct_rate.max(1), self.seconds, run.to_string());
            tokio::spawn(async move {
                let mut tick =
                    tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
                tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
                for n in 0..u64::from(rate) * seconds {
                    tick.tick().await;
                    let cmid = format!("{run}-d-{n}");
                    if let Ok(mut s) = sent.lock() {
                        s.insert(
                            parley_schemas::ids::message_id(da.user(), &cmid),
                            Instant::now(),
                        );
                    }
                    if da.send_nowait(&direct, &cmid, "hi").await.is_err() {
                        break;
                    }
                }
            })
        };
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(self.rate)));
        tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
        let started = Instant::now();
        for n in 0..total {
            tick.tick().await;
            let cmid = format!("{run}-l-{n}");
            taps.expect(
                parley_schemas::ids::message_id(sender.user(), &cmid),
                receivers,
            );
            drop(sender.send_nowait(&conv, &cmid, "hello everyone").await?);
            if n % u64::from(self.rate) == 0 {
                eprintln!(
                    "  [{:>3}s] {n} of {total} sent",
                    started.elapsed().as_secs()
                );
            }
        }
        let _ = direct_task.await;
        let left = taps.drain(Duration::from_secs(10)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = ends(log, topics).await?;
        let all = taps
            .all
            .lock()
            .map(|h| report::summary(&h))
            .unwrap_or_default();
        let each = taps
            .each
            .lock()
            .map(|h| report::summary(&h))
            .unwrap_or_default();
        let direct_summary = direct_lat
            .lock()
            .map(|h| report::summary(&h))
            .unwrap_or_default();
        // The direct conversation's messages are one delivery each (its peer is online).
        let direct_sent = u64::from(self.direct_rate.max(1)) * self.seconds;
        let per = |i: usize| {
            let extra = if i == 0 { direct_sent as i64 } else { 0 };
            (after[i] - before[i] - extra) as f64 / total as f64
        };
        let slots = log.partition_count(&topics.deliveries).await?;

        // 2. Saturation.
        let mut saturation = None;
        if self.saturate_seconds > 0 {
            eprintln!(
                "saturation: {} s, {} in flight…",
                self.saturate_seconds, self.in_flight
            );
            taps.reset();
            let start = Instant::now();
            let stop = start + Duration::from_secs(self.saturate_seconds);
            let mut in_flight = futures::stream::FuturesUnordered::new();
            let mut n = 0u64;
            use futures::StreamExt;
            while Instant::now() < stop {
                while in_flight.len() < self.in_flight {
                    let cmid = format!("{run}-s-{n}");
                    n += 1;
                    taps.expect(
                        parley_schemas::ids::message_id(sender.user(), &cmid),
                        receivers,
                    );
                    in_flight.push(
                        sender
                            .send_nowait(&conv, &cmid, "as fast as it goes")
                            .await?,
                    );
                }
                let _ = in_flight.next().await;
            }
            while in_flight.next().await.is_some() {}
            let unfinished = taps.drain(Duration::from_secs(30)).await;
            let delivered = taps.deliveries.load(Ordering::Relaxed);
            let last = taps
                .last_delivery
                .lock()
                .ok()
                .and_then(|l| *l)
                .unwrap_or_else(Instant::now);
            let secs = last
                .saturating_duration_since(start)
                .as_secs_f64()
                .max(0.001);
            saturation = Some((n, delivered, delivered as f64 / secs, unfinished));
        }

        println!();
        println!("| figure | value |");
        println!("|---|---|");
        println!("| send → held by all {receivers} online members (per group message) | {all} |");
        println!("| send → one member's copy (per delivery) | {each} |");
        println!("| direct conversation on the same partition, send → peer | {direct_summary} |");
        println!("| group messages not held by everyone within 10 s | {left} |");
        println!(
            "| records per group message: deliveries / inbox / push | {:.1} / {:.1} / {:.1} ({slots} gateway slots) |",
            per(0),
            per(1),
            per(2)
        );
        if let Some((sent, delivered, rate, unfinished)) = saturation {
            println!(
                "| saturation: group messages, deliveries, deliveries/s | {sent}, {delivered}, {rate:.0}/s ({unfinished} not held by all within 30 s) |"
            );
        }
        println!(
            "| CPU used by this load generator (its {} client sessions) | {:.1} s |",
            self.online + 2,
            report::cpu_seconds()
        );
        for t in taps.tasks {
            t.abort();
        }
        direct_tap.abort();
        Ok(())
    }
}

/// Total end offsets of `deliveries`, `inbox` and `push`.
async fn ends(log: &dyn EventLog, topics: &TopicNames) -> anyhow::Result<[i64; 3]> {
    let mut out = [0; 3];
    for (i, t) in [&topics.deliveries, &topics.inbox, &topics.push]
        .iter()
        .enumerate()
    {
        out[i] = log.end_offsets(t).await?.iter().sum();
    }
    Ok(out)
}

/// Two live sessions and their direct conversation, in `partition` of `events`.
async fn direct_on(
    base: &str,
    run: &str,
    partitions: i32,
    partition: i32,
) -> anyhow::Result<(Arc<Session>, Arc<Session>, String)> {
    for i in 0..10_000 {
        let (a, b) = (format!("d{run}-a{i}"), format!("d{run}-b{i}"));
        let id = parley_schemas::ids::direct_conversation_id(&a, &b);
        if partition_for_key(id.as_bytes(), partitions) != partition {
            continue;
        }
        let (ta, tb) = (
            Api::dev_token(base, &a).await?,
            Api::dev_token(base, &b).await?,
        );
        let conv = Api::new(base, &ta).create_direct(&b).await?;
        let sa = Session::connect(base, &ta).await?;
        let sb = Session::connect(base, &tb).await?;
        anyhow::ensure!(
            sa.ready(Duration::from_secs(60)).await? && sb.ready(Duration::from_secs(60)).await?,
            "direct sessions not live"
        );
        return Ok((Arc::new(sa), Arc::new(sb), conv));
    }
    anyhow::bail!("no direct conversation found in partition {partition}")
}
