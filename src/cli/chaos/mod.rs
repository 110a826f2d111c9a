//! `parley chaos`: crash and pause every part of a running Parley under chat load, then
//! check that no acknowledged message was lost, reordered or shown twice, and that the
//! projector's views equal a rebuild from the log.
//!
//! It needs the three-broker cluster of `scripts/kafka.sh cluster start`
//! (`scripts/chaos.sh` starts it when needed) and runs, on fresh topics
//! (`chaos-<8 hex>.`, replication factor 3, min ISR 2), projectors as 2 shards × 2
//! replicas, two fanout-workers and two gateways as child processes of this binary (the
//! gateways and fanout-workers find the projectors in the directory topic). Users chat
//! in direct and group conversations while, in turn, each gateway and fanout-worker is
//! SIGKILLed and restarted, one replica of every shard is SIGKILLed and restarted, and
//! the broker leading the most partitions of `events` is killed and restarted; then
//! that broker is paused (SIGSTOP) twice; then, in a phase of its own, the replica of
//! every shard that callers prefer hangs (SIGSTOP) for `--stall-s`. The load stops,
//! every user settles, and the checks run (each replica's views against a rebuild of
//! its shard).
//!
//! Module map:
//! - `mod.rs` (here): the options, and the phases: set up, load with faults, settle,
//!   check, report.
//! - [`procs`]: the roles as child processes; crash and restart; `/healthz`.
//! - [`cluster`]: `scripts/kafka.sh cluster kill|restart|pause|resume`; partition leaders.
//! - [`client`]: one user's task (reconnect, resync, retry) and what it records.
//! - [`checks`]: the counts, the checksum comparison, and the markdown table.

mod checks;
mod client;
mod cluster;
mod procs;
mod searches;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use parley_client::Api;
use parley_sequencer::{EventLog, KafkaConfig, KafkaLog, TopicKind, TopicSettings};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use checks::{Checksum, Conversation, Faults};
use client::{Progress, Record, Timing, User};
use cluster::Cluster;
use procs::{Env, Role, Roles};

/// One REST call of the set-up.
const REST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a killed role stays down before it is started again.
const ROLE_DOWN: Duration = Duration::from_secs(1);
/// How long a killed broker stays down.
const BROKER_DOWN: Duration = Duration::from_secs(3);
/// Pauses of the busiest leader after the kill cycle.
const PAUSE_ROUNDS: usize = 2;
/// The kill cycle, one fault every `--kill-every-s`.
const CYCLE: [Fault; 6] = [
    Fault::Role(Role::Gateway(0)),
    Fault::Role(Role::Gateway(1)),
    Fault::Role(Role::Fanout(0)),
    Fault::Role(Role::Fanout(1)),
    Fault::Replicas,
    Fault::Broker,
];

#[derive(Debug, Args)]
pub struct ChaosArgs {
    /// The three brokers of `scripts/kafka.sh cluster start`.
    #[arg(
        long,
        env = "PARLEY_CHAOS_BOOTSTRAP",
        default_value = "127.0.0.1:9192,127.0.0.1:9292,127.0.0.1:9392"
    )]
    bootstrap: String,
    /// `scripts/kafka.sh`, which kills, restarts, pauses and resumes brokers and names
    /// partition leaders.
    #[arg(
        long,
        env = "PARLEY_CHAOS_KAFKA_SCRIPT",
        default_value = "scripts/kafka.sh"
    )]
    kafka_script: PathBuf,
    /// Seconds of the kill cycle (the pauses and a last quiet stretch come after it).
    #[arg(long, env = "PARLEY_CHAOS_DURATION_S", default_value_t = 90)]
    duration_s: u64,
    /// Seconds between two faults.
    #[arg(long, env = "PARLEY_CHAOS_KILL_EVERY_S", default_value_t = 8)]
    kill_every_s: u64,
    /// Seconds the preferred projector replica of each shard stays stopped (SIGSTOP), in
    /// a phase of its own after the broker pauses.
    #[arg(long, env = "PARLEY_CHAOS_STALL_S", default_value_t = 15)]
    stall_s: u64,
    /// Seconds a paused broker stays stopped (SIGSTOP).
    #[arg(long, env = "PARLEY_CHAOS_PAUSE_S", default_value_t = 6)]
    pause_s: u64,
    /// Run without sealing. By default every role seals message bodies (`PARLEY_KEK`),
    /// and the checks include that the log holds no plain message.
    #[arg(long, env = "PARLEY_CHAOS_PLAIN")]
    plain: bool,
    /// Direct conversations (two users each).
    #[arg(long, env = "PARLEY_CHAOS_PAIRS", default_value_t = 4)]
    pairs: usize,
    /// Group conversations (four users each, none of them in a pair).
    #[arg(long, env = "PARLEY_CHAOS_GROUPS", default_value_t = 2)]
    groups: usize,
    /// Pause between two sends of one user (ms); each user sends one message at a time.
    #[arg(long, env = "PARLEY_CHAOS_SEND_EVERY_MS", default_value_t = 20)]
    send_every_ms: u64,
    /// Seconds the users have, once the load stops, to hold their whole history.
    #[arg(long, env = "PARLEY_CHAOS_SETTLE_S", default_value_t = 90)]
    settle_s: u64,
    /// Projector shards (each owns the partitions p with p % shards == its number).
    #[arg(long, env = "PARLEY_CHAOS_SHARDS", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=8))]
    shards: u64,
    /// Replicas of each shard.
    #[arg(long, env = "PARLEY_CHAOS_REPLICAS", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=4))]
    replicas: u64,
    /// Also write the result table to this markdown file.
    #[arg(long, env = "PARLEY_CHAOS_REPORT")]
    report: Option<PathBuf>,
    /// Keep the run directory (logs, projector data) even when every check passes; a
    /// failed run always keeps it.
    #[arg(long, env = "PARLEY_CHAOS_KEEP")]
    keep: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    Role(Role),
    /// Kill one replica of every shard at once (the next replica each time).
    Replicas,
    /// Kill the broker that leads the most partitions of `events`.
    Broker,
}

/// What the phases share.
struct Run {
    started: Instant,
    cluster: Cluster,
    events: String,
    progress: Progress,
    faults: Faults,
    /// How many times replicas were killed (which replica goes next).
    replica_kills: usize,
}

impl Run {
    /// `[  12s] what (acked so far: 1234)` on stderr.
    fn say(&self, what: &str) {
        eprintln!(
            "[{:>4}s] {what} (acked so far: {})",
            self.started.elapsed().as_secs(),
            self.progress.acked.load(Ordering::Relaxed)
        );
    }

    fn failed(&mut self, what: String) {
        eprintln!("chaos: {what}");
        self.faults.failed.push(what);
    }

    /// Restarts roles that ended by themselves, and notes them.
    async fn revive(&mut self, roles: &mut Roles) {
        for (role, why) in roles.exited() {
            let what = format!("{role} exited by itself: {why}");
            self.say(&what);
            self.faults.exited.push(what);
            if let Err(e) = roles.crash(role, Duration::ZERO).await {
                self.failed(format!("{role} did not start again: {e:#}"));
            }
        }
    }

    async fn inject(&mut self, fault: Fault, roles: &mut Roles) {
        match fault {
            Fault::Role(role) => {
                self.say(&format!("killed {role}"));
                let kind = match role {
                    Role::Gateway(_) => "gateway",
                    Role::Fanout(_) => "fanout-worker",
                    Role::Projector(..) => "projector replica",
                };
                *self.faults.kills.entry(kind).or_default() += 1;
                if let Err(e) = roles.crash(role, ROLE_DOWN).await {
                    self.failed(format!("{role} did not come back: {e:#}"));
                }
            }
            Fault::Replicas => {
                let r = self.replica_kills % roles.replicas;
                self.replica_kills += 1;
                self.say(&format!(
                    "killed replica {r} of each of the {} projector shards",
                    roles.shards
                ));
                *self.faults.kills.entry("projector replica").or_default() += roles.shards;
                if let Err(e) = roles.crash_replicas(r, ROLE_DOWN).await {
                    self.failed(format!("projector replicas {r} did not come back: {e:#}"));
                }
            }
            Fault::Broker => {
                let n = match self.cluster.busiest_leader(&self.events).await {
                    Ok(n) => n,
                    Err(e) => return self.failed(format!("no leader to kill: {e:#}")),
                };
                if let Err(e) = self.cluster.kill(n).await {
                    return self.failed(format!("broker {n} not killed: {e:#}"));
                }
                self.say(&format!(
                    "killed broker {n} (leads most of {})",
                    self.events
                ));
                *self.faults.kills.entry("broker").or_default() += 1;
                tokio::time::sleep(BROKER_DOWN).await;
                if let Err(e) = self.cluster.restart(n).await {
                    self.failed(format!("broker {n} did not come back: {e:#}"));
                }
            }
        }
        self.revive(roles).await;
    }

    /// SIGSTOPs the preferred replica of every shard for `stall`, then SIGCONTs them.
    async fn stall(&mut self, roles: &mut Roles, stall: Duration) {
        let stalled = roles.preferred_replicas();
        self.say(&format!(
            "stalled (SIGSTOP) {} for {} s: {stalled:?}",
            if stalled.len() == 1 {
                "one replica"
            } else {
                "the preferred replica of each shard"
            },
            stall.as_secs()
        ));
        match roles.stall(&stalled, stall).await {
            Ok(()) => self.faults.stalls += stalled.len(),
            Err(e) => self.failed(format!("replicas not stalled or not resumed: {e:#}")),
        }
    }

    /// SIGSTOPs the busiest leader for `pause`, then SIGCONTs it.
    async fn pause(&mut self, pause: Duration) {
        let n = match self.cluster.busiest_leader(&self.events).await {
            Ok(n) => n,
            Err(e) => return self.failed(format!("no leader to pause: {e:#}")),
        };
        let paused = match self.cluster.pause(n).await {
            Ok(p) => p,
            Err(e) => return self.failed(format!("broker {n} not paused: {e:#}")),
        };
        self.say(&format!(
            "paused broker {} for {} s",
            paused.broker(),
            pause.as_secs()
        ));
        self.faults.pauses += 1;
        tokio::time::sleep(pause).await;
        if let Err(e) = paused.resume().await {
            self.failed(format!("broker {n} not resumed: {e:#}"));
        }
        self.say(&format!("resumed broker {n}"));
    }
}

impl ChaosArgs {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        anyhow::ensure!(
            self.pairs + self.groups > 0,
            "--pairs and --groups are both 0: nobody would chat"
        );
        anyhow::ensure!(
            self.kill_every_s > 0 && self.pause_s > 0,
            "--kill-every-s and --pause-s must be positive"
        );
        // Ctrl-C ends the run here, so that the children are killed and a paused broker
        // resumed (their guards are dropped with the run).
        let stop = crate::shutdown::on_signal();
        tokio::select! {
            r = self.chaos() => r,
            _ = stop.cancelled() => Err(anyhow::anyhow!("interrupted")),
        }
    }

    async fn chaos(&self) -> anyhow::Result<ExitCode> {
        let started = Instant::now();
        let id = Uuid::new_v4().simple().to_string()[..8].to_string();
        let prefix = format!("chaos-{id}.");
        let dir = std::env::temp_dir().join(format!("parley-chaos-{id}"));
        let cluster = Cluster::new(self.kafka_script.clone(), &self.bootstrap).await?;
        eprintln!("chaos: topics {prefix}*, run directory {}", dir.display());

        let settings = TopicSettings {
            prefix: prefix.clone(),
            partitions: 8,
            gateway_slots: 4,
            replication_factor: 3,
            min_insync_replicas: Some(2),
        };
        provision(&self.bootstrap, &settings).await?;
        let events = settings.name(TopicKind::Events);
        let leader = cluster
            .busiest_leader(&events)
            .await
            .context("finding the leaders of the new topic (is the cluster up?)")?;
        eprintln!("chaos: broker {leader} leads the most partitions of {events}");

        let env = Env {
            exe: std::env::current_exe().context("cannot find this binary")?,
            log_url: format!("kafka://{}", self.bootstrap),
            prefix,
            secret: format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple()),
            kek: (!self.plain)
                .then(|| format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple())),
            dir: dir.clone(),
        };
        let mut roles =
            Roles::start(env, 2, 2, self.shards as usize, self.replicas as usize).await?;
        eprintln!(
            "chaos: projectors {} ({} shards × {} replicas), gateways {}; logs in {}",
            roles.projector_urls.join(" "),
            self.shards,
            self.replicas,
            roles.gateway_urls.join(" "),
            dir.join("logs").display()
        );
        let (users, conversations) = self.users(&roles.gateway_urls[0]).await?;

        // Load, with faults.
        let mut run = Run {
            started,
            cluster,
            events,
            progress: Progress::default(),
            faults: Faults::default(),
            replica_kills: 0,
        };
        run.progress.sending.store(users.len(), Ordering::Relaxed);
        let load = CancellationToken::new();
        let settle = Duration::from_secs(self.settle_s);
        let tasks: Vec<_> = users
            .iter()
            .map(|u| {
                let timing = Timing {
                    every: Duration::from_millis(self.send_every_ms),
                    load: load.clone(),
                    settle,
                };
                let task = client::run(
                    u.clone(),
                    roles.gateway_urls.clone(),
                    timing,
                    run.progress.clone(),
                );
                (u.name.clone(), tokio::spawn(task))
            })
            .collect();
        let all_in = Instant::now() + Duration::from_secs(120);
        while run.progress.connected.load(Ordering::Relaxed) < users.len()
            && Instant::now() < all_in
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        run.say(&format!(
            "{} of {} users connected; load starts",
            run.progress.connected.load(Ordering::Relaxed),
            users.len()
        ));
        let every = Duration::from_secs(self.kill_every_s);
        let kills_end = Instant::now() + Duration::from_secs(self.duration_s);
        let mut next = Instant::now() + every;
        for fault in CYCLE.iter().cycle() {
            if next > kills_end {
                break;
            }
            tokio::time::sleep_until(next).await;
            run.inject(*fault, &mut roles).await;
            next = (next + every).max(Instant::now() + every / 2);
        }
        for _ in 0..PAUSE_ROUNDS {
            tokio::time::sleep(every).await;
            run.pause(Duration::from_secs(self.pause_s)).await;
            run.revive(&mut roles).await;
        }
        // A phase of its own: the replica callers prefer, in every shard, hangs.
        tokio::time::sleep(every).await;
        run.stall(&mut roles, Duration::from_secs(self.stall_s))
            .await;
        run.revive(&mut roles).await;
        tokio::time::sleep(every).await;
        run.say("load stops; settling");
        load.cancel();

        // Settle: each user gets its last message acknowledged and its history.
        let records = collect(tasks, settle).await;
        run.revive(&mut roles).await;
        run.say("users settled; reading the history of every conversation");
        let histories = histories(&users, &conversations, &roles.gateway_urls).await;
        run.say("searching for every user's last message");
        let unfound = searches::unfound(&users, &histories, &roles.gateway_urls).await;

        // Every replica's views against a rebuild of its shard.
        run.say("rebuilding each shard's views in a fresh projector");
        let within = settle.max(Duration::from_secs(120));
        let mut checksum = None;
        for s in 0..roles.shards {
            let url = match roles.start_rebuild(s).await {
                Ok(url) => url,
                Err(e) => {
                    checksum = Some(Checksum::NotCompared(format!(
                        "the rebuild of shard {s} did not start: {e:#}"
                    )));
                    break;
                }
            };
            for r in 0..roles.replicas {
                let live = roles.projector_urls[s * roles.replicas + r].clone();
                let c = checks::compare_checksums(&live, &url, &roles.env.secret, within).await;
                let ok = c.ok();
                checksum = Some(c);
                if !ok {
                    run.say(&format!("projector {s}.{r} differs from the rebuild"));
                    break;
                }
            }
            if !checksum.as_ref().is_some_and(Checksum::ok) {
                break;
            }
        }
        let checksum =
            checksum.unwrap_or_else(|| Checksum::NotCompared("no projector to compare".into()));

        let mut counts = checks::count(&conversations, &histories, &records);
        counts.search_missing = unfound;
        if !self.plain {
            run.say("reading the log: every message sealed?");
            let plain = match plain_messages(&self.bootstrap, &roles.env.prefix).await {
                Ok((sealed, plain)) => {
                    run.say(&format!(
                        "{sealed} sealed messages in the log, {plain} plain"
                    ));
                    plain
                }
                Err(e) => {
                    run.say(&format!("the log could not be read: {e:#}"));
                    usize::MAX
                }
            };
            counts.plain_in_log = Some(plain);
        }
        let verdict = checks::verdict(&counts, &checksum, &run.faults, started.elapsed());
        crate::cli::print_stdout(&format!("# parley chaos\n\n{}", verdict.markdown));
        if let Some(path) = &self.report {
            std::fs::write(
                path,
                format!("# parley chaos ({id})\n\n{}", verdict.markdown),
            )
            .with_context(|| format!("cannot write {}", path.display()))?;
        }
        drop(roles);
        let passed = verdict.failures.is_empty();
        if passed && !self.keep {
            let _ = std::fs::remove_dir_all(&dir);
        } else {
            eprintln!("chaos: logs and data kept in {}", dir.display());
        }
        eprintln!("chaos: topics {}* are left in the log", settings.prefix);
        if passed {
            eprintln!("chaos: every check passed");
            Ok(ExitCode::SUCCESS)
        } else {
            for f in &verdict.failures {
                eprintln!("chaos: FAILED: {f}");
            }
            Ok(ExitCode::FAILURE)
        }
    }

    /// The users and their conversations: pairs in direct conversations, then groups
    /// of four created by their first member. Homes alternate between the gateways.
    async fn users(&self, gateway: &str) -> anyhow::Result<(Vec<User>, Vec<Conversation>)> {
        let mut users = Vec::new();
        let mut conversations = Vec::new();
        let mut sets: Vec<(String, Vec<String>)> = Vec::new();
        for i in 0..self.pairs {
            sets.push((
                format!("direct p{i}"),
                vec![format!("p{i}a"), format!("p{i}b")],
            ));
        }
        for j in 0..self.groups {
            sets.push((
                format!("group g{j}"),
                (0..4).map(|k| format!("g{j}m{k}")).collect(),
            ));
        }
        for (label, members) in sets {
            let mut tokens = Vec::new();
            for m in &members {
                let token =
                    within(&format!("a dev token for {m}"), Api::dev_token(gateway, m)).await?;
                tokens.push(token);
            }
            let api = Api::new(gateway, &tokens[0]);
            let id = if members.len() == 2 {
                within(&format!("creating {label}"), api.create_direct(&members[1])).await?
            } else {
                let others: Vec<&str> = members[1..].iter().map(String::as_str).collect();
                within(
                    &format!("creating {label}"),
                    api.create_group(&label, &others),
                )
                .await?
            };
            for (m, token) in members.iter().zip(tokens) {
                users.push(User {
                    name: m.clone(),
                    token,
                    conversation: id.clone(),
                    home: users.len() % 2,
                });
            }
            conversations.push(Conversation { id, label, members });
        }
        Ok((users, conversations))
    }
}

/// Creates the run's topics (RF 3, min ISR 2) through the log's own provisioning.
async fn provision(bootstrap: &str, settings: &TopicSettings) -> anyhow::Result<()> {
    let log = KafkaLog::connect(KafkaConfig::with_bootstrap(bootstrap))
        .await
        .with_context(|| format!("connecting to {bootstrap} (scripts/kafka.sh cluster start)"))?;
    let reports = log
        .provision(&settings.spec())
        .await
        .context("creating the topics")?;
    if let Some(bad) = reports.iter().find(|r| !r.is_ok()) {
        bail!(
            "topic {} is not as specified: {:?}",
            bad.spec.name,
            bad.status
        );
    }
    Ok(())
}

/// Waits for every user's task (bounded: the settle time and a reconnect's worth more).
async fn collect(
    tasks: Vec<(String, tokio::task::JoinHandle<Record>)>,
    settle: Duration,
) -> Vec<Record> {
    let deadline = Instant::now() + settle + Duration::from_secs(180);
    let mut records = Vec::new();
    for (user, task) in tasks {
        let abort = task.abort_handle();
        match tokio::time::timeout_at(deadline, task).await {
            Ok(Ok(r)) => records.push(r),
            Ok(Err(e)) => eprintln!("chaos: the task of {user} failed: {e}"),
            Err(_) => {
                abort.abort();
                eprintln!("chaos: the task of {user} did not end in time");
            }
        }
    }
    records
}

/// The history of each conversation, read with a member's token from any gateway
/// (retried for up to a minute); a conversation whose history cannot be read is left out.
async fn histories(
    users: &[User],
    conversations: &[Conversation],
    gateways: &[String],
) -> HashMap<String, Vec<parley_schemas::frames::MessageView>> {
    let mut out = HashMap::new();
    for conv in conversations {
        let Some(member) = users.iter().find(|u| u.conversation == conv.id) else {
            continue;
        };
        let apis: Vec<Api> = gateways
            .iter()
            .map(|g| Api::new(g, &member.token))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(h) = client::history(&apis, &conv.id).await {
                out.insert(conv.id.clone(), h);
                break;
            }
            if Instant::now() >= deadline {
                eprintln!("chaos: cannot read the history of {}", conv.label);
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    out
}

/// A set-up call, bounded by [`REST_TIMEOUT`].
async fn within<T, E: std::fmt::Display>(
    what: &str,
    call: impl std::future::Future<Output = Result<T, E>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(REST_TIMEOUT, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => bail!("{what}: {e}"),
        Err(_) => bail!("{what}: no answer within {REST_TIMEOUT:?}"),
    }
}

/// The messages of the run's `events` topic: (sealed, plain).
async fn plain_messages(bootstrap: &str, prefix: &str) -> anyhow::Result<(usize, usize)> {
    use futures::StreamExt;
    use parley_sequencer::{EventLog, KafkaConfig, KafkaLog, StartAt};
    let log = KafkaLog::connect(KafkaConfig::with_bootstrap(bootstrap)).await?;
    let topic = format!("{prefix}events");
    let ends = log.end_offsets(&topic).await?;
    let (mut sealed, mut plain) = (0, 0);
    for (p, end) in ends.iter().enumerate().filter(|(_, e)| **e > 0) {
        let mut stream = log.read(&topic, &[(p as i32, StartAt::Beginning)]).await?;
        while let Ok(Some(r)) = tokio::time::timeout(Duration::from_secs(30), stream.next()).await {
            let r = r?;
            if let Some(Ok(parley_schemas::AnyRecord::MessagePosted(m))) =
                r.value.as_deref().map(parley_schemas::decode_any)
            {
                match m.sealed {
                    Some(_) => sealed += 1,
                    None => plain += 1,
                }
            }
            if r.offset + 1 >= *end {
                break;
            }
        }
    }
    Ok((sealed, plain))
}
