//! `parley bench search-index` and `parley bench search`.
//!
//! - `search-index`, in process: the same synthetic log (groups, then messages of
//!   Zipf-distributed words) applied to fresh views with search off and with search on,
//!   alternated: the views' catch-up rate each way, the index's own rate, and the sizes
//!   on disk per million messages.
//! - `search`, against a running gateway: fills it with messages (unless told not to),
//!   then queries at fixed rates with sends at a fixed rate beside them: query latency,
//!   and send → `sent` latency with and without the queries.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use parley_client::{Api, SearchOptions, Session};
use parley_projector::search::indexer::{Indexer, Touched};
use parley_projector::store::{Store, Stream};
use parley_schemas::{AnyRecord, ConversationCreated, ConversationKind, MessagePosted, Meta};
use parley_sequencer::LogRecord;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::report;

/// A deterministic source of numbers (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// A rank in `0..n`, small ranks far likelier (roughly Zipf).
    fn zipf(&mut self, n: usize) -> usize {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((n as f64).powf(u) as usize).saturating_sub(1).min(n - 1)
    }
}

/// The words messages are made of: made-up, pronounceable, distinct.
struct Vocabulary(Vec<String>);

impl Vocabulary {
    fn new(size: usize) -> Self {
        const ONSETS: [&str; 16] = [
            "b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "st",
        ];
        const VOWELS: [&str; 6] = ["a", "e", "i", "o", "u", "ai"];
        let mut words = Vec::with_capacity(size);
        let mut i = 0usize;
        while words.len() < size {
            let mut w = String::new();
            let mut n = i;
            loop {
                w.push_str(ONSETS[n % ONSETS.len()]);
                n /= ONSETS.len();
                w.push_str(VOWELS[n % VOWELS.len()]);
                n /= VOWELS.len();
                if n == 0 {
                    break;
                }
            }
            words.push(w);
            i += 1;
        }
        Vocabulary(words)
    }

    fn body(&self, rng: &mut Rng) -> String {
        let n = 6 + rng.below(14);
        let words: Vec<&str> = (0..n)
            .map(|_| self.0[rng.zipf(self.0.len())].as_str())
            .collect();
        words.join(" ")
    }

    /// A query: one or two words of middling frequency (found, but not everywhere).
    fn query(&self, rng: &mut Rng) -> String {
        let pick = |rng: &mut Rng| self.0[50 + rng.below(2_000.min(self.0.len() - 50))].clone();
        if rng.below(3) == 0 {
            format!("{} {}", pick(rng), pick(rng))
        } else {
            pick(rng)
        }
    }
}

#[derive(Debug, Args)]
pub struct SearchIndexArgs {
    /// Messages in the synthetic log.
    #[arg(long, default_value_t = 1_000_000)]
    messages: usize,
    /// Group conversations they are spread over (5 members each).
    #[arg(long, default_value_t = 1_000)]
    conversations: usize,
    /// Records per batch applied (the projector's default).
    #[arg(long, default_value_t = 1_000)]
    batch: usize,
    /// Runs of each kind (search off, search on), alternated.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Where the views are built (each run in a fresh directory under it).
    #[arg(long, default_value = "/tmp")]
    dir: std::path::PathBuf,
    /// Also write the synthetic log and queries here, for a peer to index the same
    /// messages (`messages.tsv`: conversation, seq, sender, ts, body; `members.tsv`:
    /// conversation, user; `queries.tsv`: user, query), and stop.
    #[arg(long)]
    dump: Option<std::path::PathBuf>,
}

/// A directory removed when dropped.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn du(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if meta.is_file() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .map(|d| d.flatten().map(|e| du(&e.path())).sum())
        .unwrap_or(0)
}

impl SearchIndexArgs {
    fn log(&self) -> anyhow::Result<Vec<(Stream, LogRecord)>> {
        let mut rng = Rng(7);
        let words = Vocabulary::new(20_000);
        let users = (self.conversations / 2).max(5);
        let mut records: Vec<AnyRecord> = Vec::with_capacity(self.messages + self.conversations);
        let mut members = Vec::new();
        for c in 0..self.conversations {
            let m: Vec<String> = (0..5)
                .map(|k| format!("u{}", (c + k * 97) % users))
                .collect();
            records.push(
                ConversationCreated {
                    meta: Meta::new(&m[0]),
                    conversation_id: format!("c{c}"),
                    kind: ConversationKind::Group,
                    title: None,
                    members: m.clone(),
                }
                .into(),
            );
            members.push(m);
        }
        for i in 0..self.messages {
            let c = rng.below(self.conversations);
            let sender = members[c][rng.below(5)].clone();
            records.push(
                MessagePosted {
                    meta: Meta::new(&sender),
                    conversation_id: format!("c{c}"),
                    message_id: Uuid::from_u128(i as u128 + 1),
                    client_msg_id: format!("m{i}"),
                    body: words.body(&mut rng),
                    reply_to: None,
                    attachments: Vec::new(),
                    sealed: None,
                }
                .into(),
            );
        }
        records
            .iter()
            .enumerate()
            .map(|(i, r)| Ok(parley_projector::store::event_at(0, i as i64, r)?))
            .collect()
    }

    /// One run: the views built from `log` (with an index if `search`); returns the
    /// seconds the views took, the seconds until the index had committed everything,
    /// and the views' and the index's bytes on disk.
    async fn once(
        &self,
        log: &Arc<Vec<(Stream, LogRecord)>>,
        search: bool,
    ) -> anyhow::Result<(f64, f64, u64, u64)> {
        let path = self
            .dir
            .join(format!("parley-search-bench-{}", Uuid::new_v4().simple()));
        let dir = Scratch(path);
        let store = Store::open(dir.path())?;
        let stop = CancellationToken::new();
        let indexing = if search {
            let incarnation = store.incarnation()?;
            let (i, task) = Indexer::start(
                dir.path().join("search"),
                store.clone(),
                incarnation,
                BTreeMap::new(),
                stop.clone(),
            )
            .await?;
            Some((i, task))
        } else {
            store.without_search()?;
            None
        };
        let end = log.len() as i64;
        let started = Instant::now();
        let feed = indexing.as_ref().map(|(i, _)| i.clone());
        let (s, l, batch) = (store.clone(), log.clone(), self.batch);
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            for chunk in l.chunks(batch) {
                let done = s.apply(chunk)?;
                if let Some(i) = &feed {
                    let offsets = done.offsets.iter().map(|((_, p), o)| (*p, *o)).collect();
                    i.touched(Touched {
                        messages: done.touched,
                        offsets,
                    });
                }
            }
            Ok(())
        })
        .await??;
        let views_s = started.elapsed().as_secs_f64();
        let mut index_s = 0.0;
        let mut index_bytes = 0;
        if let Some((i, task)) = indexing {
            anyhow::ensure!(
                i.wait(&[(0, end)], Duration::from_secs(3_600)).await?,
                "the index did not catch up"
            );
            // Then its last commit (the indexer commits as it stops).
            stop.cancel();
            task.await??;
            index_s = started.elapsed().as_secs_f64();
            anyhow::ensure!(
                i.index.documents() == self.messages as u64,
                "the index holds {} documents, not {}",
                i.index.documents(),
                self.messages
            );
            index_bytes = du(&dir.path().join("search"));
        }
        drop(store);
        let views_bytes = du(dir.path()) - index_bytes;
        Ok((views_s, index_s, views_bytes, index_bytes))
    }

    pub async fn run(self) -> anyhow::Result<ExitCode> {
        anyhow::ensure!(
            self.messages > 0 && self.conversations > 0 && self.batch > 0 && self.rounds > 0,
            "--messages, --conversations, --batch and --rounds must be positive"
        );
        println!("# parley bench search-index");
        println!("machine: {}", report::machine());
        println!(
            "{} messages in {} groups of 5, batches of {}; {} rounds of (search off, search on)",
            self.messages, self.conversations, self.batch, self.rounds
        );
        let log = Arc::new(self.log()?);
        if let Some(dir) = &self.dump {
            dump(dir, &log, self.conversations)?;
            println!("the log and 10,000 queries written to {}", dir.display());
            return Ok(ExitCode::SUCCESS);
        }
        let m = self.messages as f64;
        let mib = |b: u64| b as f64 / 1_048_576.0;
        let per_million = |b: u64| mib(b) * 1_000_000.0 / m;
        let mut off_rates = Vec::new();
        let mut on_rates = Vec::new();
        for round in 1..=self.rounds {
            let (views_s, _, views_b, _) = self.once(&log, false).await?;
            off_rates.push(m / views_s);
            println!(
                "round {round} search off: views {:.0} msgs/s ({views_s:.1} s); views {:.0} MiB ({:.0} MiB per million)",
                m / views_s,
                mib(views_b),
                per_million(views_b)
            );
            let (views_s, index_s, views_b, index_b) = self.once(&log, true).await?;
            on_rates.push(m / views_s);
            println!(
                "round {round} search on:  views {:.0} msgs/s ({views_s:.1} s), index committed {:.0} msgs/s ({index_s:.1} s); views {:.0} MiB, index {:.0} MiB ({:.0} MiB per million)",
                m / views_s,
                m / index_s,
                mib(views_b),
                mib(index_b),
                per_million(index_b)
            );
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        println!(
            "views' catch-up with search on: {:.1}% of their rate with search off",
            100.0 * mean(&on_rates) / mean(&off_rates)
        );
        Ok(ExitCode::SUCCESS)
    }
}

/// Writes `log` (its groups and messages) and queries as TSV files in `dir`.
fn dump(dir: &Path, log: &[(Stream, LogRecord)], conversations: usize) -> anyhow::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let clean = |s: &str| s.replace(['\t', '\n', '\\'], " ");
    let mut messages = std::io::BufWriter::new(std::fs::File::create(dir.join("messages.tsv"))?);
    let mut members = std::io::BufWriter::new(std::fs::File::create(dir.join("members.tsv"))?);
    let mut users = Vec::new();
    for (_, r) in log {
        let Some(value) = &r.value else { continue };
        match parley_schemas::decode_any(value)? {
            AnyRecord::ConversationCreated(c) => {
                for m in &c.members {
                    writeln!(members, "{}\t{}", c.conversation_id, m)?;
                    users.push(m.clone());
                }
            }
            AnyRecord::MessagePosted(m) => writeln!(
                messages,
                "{}\t{}\t{}\t{}\t{}",
                m.conversation_id,
                r.offset,
                m.meta.actor,
                m.meta.occurred_at,
                clean(&m.body)
            )?,
            _ => {}
        }
    }
    users.sort();
    users.dedup();
    let words = Vocabulary::new(20_000);
    let mut rng = Rng(0xbeef + conversations as u64);
    let mut queries = std::io::BufWriter::new(std::fs::File::create(dir.join("queries.tsv"))?);
    for _ in 0..10_000 {
        let user = &users[rng.below(users.len())];
        writeln!(queries, "{user}\t{}", words.query(&mut rng))?;
    }
    messages.flush()?;
    members.flush()?;
    queries.flush()?;
    Ok(())
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// A running gateway with --dev-auth (and rate limits off, for the fill).
    #[arg(long)]
    gateway: String,
    /// Messages sent before the queries (0: search what is there; then --users and
    /// --conversations must match an earlier run's, with its --run).
    #[arg(long, default_value_t = 1_000_000)]
    fill: usize,
    /// Users (each in about 5 × conversations / users groups).
    #[arg(long, default_value_t = 200)]
    users: usize,
    /// Group conversations, 5 members each.
    #[arg(long, default_value_t = 1_000)]
    conversations: usize,
    /// Sends in flight per filling session.
    #[arg(long, default_value_t = 200)]
    window: usize,
    /// Query rates (per second) measured, one phase each.
    #[arg(long, value_delimiter = ',', default_value = "10,100")]
    rates: Vec<u32>,
    /// Sends per second beside the queries (and alone, for comparison).
    #[arg(long, default_value_t = 1_000)]
    send_rate: u32,
    /// Seconds per phase.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// The name of the users and groups (a later run with --fill 0 reuses them).
    #[arg(long)]
    run: Option<String>,
}

/// A token cancelled after `phase`.
fn stop_after(phase: Duration) -> CancellationToken {
    let stop = CancellationToken::new();
    let later = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(phase).await;
        later.cancel();
    });
    stop
}

/// The users, their sessions and the groups of one run.
struct Population {
    base: String,
    tokens: Vec<String>,
    sessions: Vec<Arc<Session>>,
    /// Per group: its id and the indexes of its members.
    groups: Vec<(String, Vec<usize>)>,
}

impl SearchArgs {
    async fn populate(&self, run: &str) -> anyhow::Result<Population> {
        let base = self.gateway.trim_end_matches('/').to_string();
        let mut tokens = Vec::with_capacity(self.users);
        for u in 0..self.users {
            tokens.push(Api::dev_token(&base, &format!("s{run}-u{u}")).await?);
        }
        let mut groups = Vec::with_capacity(self.conversations);
        for c in 0..self.conversations {
            let members: Vec<usize> = (0..5).map(|k| (c + k * 37) % self.users).collect();
            let names: Vec<String> = members[1..]
                .iter()
                .map(|m| format!("s{run}-u{m}"))
                .collect();
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let api = Api::new(&base, &tokens[members[0]]);
            let id = api.create_group(&format!("s{run}-g{c}"), &refs).await?;
            groups.push((id, members));
        }
        // Every session's user sends into its groups: each must be in one.
        if let Some(u) = (0..20).find(|u| !groups.iter().any(|(_, m)| m.contains(u))) {
            anyhow::bail!(
                "user {u} is in no group: give more --conversations (at least {})",
                self.users.div_ceil(5)
            );
        }
        let mut sessions = Vec::new();
        for t in tokens.iter().take(20) {
            let s = Session::connect(&base, t).await?;
            anyhow::ensure!(
                s.ready(Duration::from_secs(30)).await?,
                "a session not live"
            );
            sessions.push(Arc::new(s));
        }
        Ok(Population {
            base,
            tokens,
            sessions,
            groups,
        })
    }

    /// A group user `u` (< 20, a session's user) is in.
    fn group_of(p: &Population, u: usize, rng: &mut Rng) -> usize {
        let mine: Vec<usize> = (0..p.groups.len())
            .filter(|g| p.groups[*g].1.contains(&u))
            .collect();
        mine[rng.below(mine.len())]
    }

    async fn fill(&self, p: &Population, words: &Vocabulary) -> anyhow::Result<()> {
        let started = Instant::now();
        let done = Arc::new(AtomicUsize::new(0));
        let per = self.fill.div_ceil(p.sessions.len());
        let mut tasks = Vec::new();
        for (u, s) in p.sessions.iter().enumerate() {
            let mut rng = Rng(u as u64 + 1);
            let mine: Vec<String> = (0..p.groups.len())
                .filter(|g| p.groups[*g].1.contains(&u))
                .map(|g| p.groups[g].0.clone())
                .collect();
            anyhow::ensure!(!mine.is_empty(), "user {u} is in no group");
            let mut batch = Vec::with_capacity(per);
            for i in 0..per {
                batch.push((mine[rng.below(mine.len())].clone(), words.body(&mut rng), i));
            }
            let (s, done, window) = (s.clone(), done.clone(), self.window);
            tasks.push(tokio::spawn(async move {
                let mut inflight = std::collections::VecDeque::new();
                for (conv, body, i) in batch {
                    if inflight.len() >= window {
                        if let Some(rx) = inflight.pop_front() {
                            let _ = rx.await;
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    match s.send_nowait(&conv, &format!("f{u}-{i}"), &body).await {
                        Ok(rx) => inflight.push_back(rx),
                        Err(e) => return Err(anyhow::anyhow!("send: {e}")),
                    }
                }
                for rx in inflight {
                    let _ = rx.await;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            }));
        }
        let progress = {
            let done = done.clone();
            let total = per * p.sessions.len();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    let n = done.load(Ordering::Relaxed);
                    eprintln!(
                        "search bench: filled {n} of {total} ({:.0}/s)",
                        n as f64 / started.elapsed().as_secs_f64()
                    );
                }
            })
        };
        for t in tasks {
            t.await??;
        }
        progress.abort();
        let n = done.load(Ordering::Relaxed);
        println!(
            "filled {n} messages in {:.0} s ({:.0}/s)",
            started.elapsed().as_secs_f64(),
            n as f64 / started.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// Sends at `--send-rate` from the sessions until `stop`: send → `sent` latencies.
    async fn sends(
        &self,
        p: &Population,
        words: &Vocabulary,
        stop: CancellationToken,
        phase: &str,
    ) -> anyhow::Result<hdrhistogram::Histogram<u64>> {
        let latency = Arc::new(Mutex::new(report::histogram()));
        let every = Duration::from_secs_f64(1.0 / self.send_rate.max(1) as f64);
        let mut tick = tokio::time::interval(every);
        let mut rng = Rng(0xfeed);
        let mut n = 0usize;
        let mut waits = Vec::new();
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            let u = rng.below(p.sessions.len());
            let g = Self::group_of(p, u, &mut rng);
            let body = words.body(&mut rng);
            let t = Instant::now();
            let rx = p.sessions[u]
                .send_nowait(&p.groups[g].0, &format!("{phase}-{n}"), &body)
                .await
                .map_err(|e| anyhow::anyhow!("send: {e}"))?;
            n += 1;
            let latency = latency.clone();
            waits.push(tokio::spawn(async move {
                if rx.await.is_ok() {
                    report::record(&mut *latency.lock().await, t.elapsed());
                }
            }));
        }
        for w in waits {
            let _ = w.await;
        }
        let h = latency.lock().await.clone();
        Ok(h)
    }

    /// Queries at `rate` per second until `stop`: latencies, and how many found nothing.
    async fn queries(
        p: &Population,
        words: &Vocabulary,
        rate: u32,
        stop: CancellationToken,
    ) -> (hdrhistogram::Histogram<u64>, usize, usize, usize) {
        let latency = Arc::new(Mutex::new(report::histogram()));
        let empty = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
        let mut rng = Rng(0xbeef + rate as u64);
        let mut asked = 0;
        let mut running = Vec::new();
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            // A user who wrote (the fill's senders): their groups hold messages.
            let u = rng.below(p.sessions.len());
            let api = Api::new(&p.base, &p.tokens[u]);
            let q = words.query(&mut rng);
            let (latency, empty, failed) = (latency.clone(), empty.clone(), failed.clone());
            asked += 1;
            running.push(tokio::spawn(async move {
                let t = Instant::now();
                match api.search(&q, &SearchOptions::default()).await {
                    Ok(page) => {
                        report::record(&mut *latency.lock().await, t.elapsed());
                        if page.results.is_empty() {
                            empty.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(e) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        eprintln!("search bench: a search failed: {e}");
                    }
                }
            }));
        }
        for r in running {
            let _ = r.await;
        }
        let h = latency.lock().await.clone();
        (
            h,
            asked,
            empty.load(Ordering::Relaxed),
            failed.load(Ordering::Relaxed),
        )
    }

    pub async fn run(self) -> anyhow::Result<ExitCode> {
        anyhow::ensure!(
            self.users >= 20
                && self.conversations > 0
                && self.window > 0
                && self.send_rate > 0
                && !self.rates.contains(&0),
            "--users must be at least 20; --conversations, --window, --send-rate and every rate positive"
        );
        println!("# parley bench search");
        println!("machine: {}", report::machine());
        let run = self
            .run
            .clone()
            .unwrap_or_else(|| Uuid::new_v4().simple().to_string()[..6].to_string());
        println!(
            "gateway {}; run {run}: {} users, {} groups of 5; fill {}; queries at {:?}/s with sends at {}/s, {} s each",
            self.gateway, self.users, self.conversations, self.fill, self.rates, self.send_rate, self.seconds
        );
        let words = Vocabulary::new(20_000);
        let p = self.populate(&run).await?;
        if self.fill > 0 {
            self.fill(&p, &words).await?;
        }
        let phase = Duration::from_secs(self.seconds);
        // Sends alone, then beside each query rate.
        let alone = self.sends(&p, &words, stop_after(phase), "alone").await?;
        println!(
            "sends alone at {}/s: {}",
            self.send_rate,
            report::summary(&alone)
        );
        for rate in &self.rates {
            let stop = stop_after(phase);
            let tag = format!("q{rate}");
            let (sent, (q, asked, empty, failed)) = tokio::join!(
                self.sends(&p, &words, stop.clone(), &tag),
                Self::queries(&p, &words, *rate, stop.clone())
            );
            println!(
                "queries at {rate}/s: {} ({asked} asked, {empty} found nothing, {failed} failed)",
                report::summary(&q)
            );
            println!(
                "  sends beside them at {}/s: {}",
                self.send_rate,
                report::summary(&sent?)
            );
        }
        for s in p.sessions {
            if let Ok(s) = Arc::try_unwrap(s) {
                s.close().await;
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
