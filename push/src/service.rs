//! The push role's loop: jobs in, notifications out, offsets committed once handled.
//!
//! Not pushed:
//! - to a user with a live session when the collapsed notification is handled;
//! - for a conversation the user muted, unless one of the messages mentions them;
//! - for seqs an earlier notification already covered (a repeated job, or a job read
//!   again after a restart);
//! - to a user with no device.
//!
//! A job's offset is committed only once its notification reached every device or was
//! dead-lettered, so a crash loses nothing: the next member reads it again, and the
//! intents of `state.rs` keep the repeat under the same notification id.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use parley_presence::PresenceStore;
use parley_projector::Views;
use parley_schemas::{decode, now_millis, PushJob};
use parley_sequencer::{EventLog, GroupEvent};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::breaker::Breakers;
use crate::collapse::{Collapsed, Collapser, Job};
use crate::devices::{Device, DeviceBook};
use crate::payload::Notification;
use crate::provider::{PushProvider, WebhookProvider};
use crate::state::{Intent, PushState};
use crate::PushConfig;

/// What the push role did, served at `GET /v1/stats`. `skipped_*` count jobs;
/// `delivered`, `retried` and `dead_lettered` count webhook requests per device.
#[derive(Debug, Default, Serialize)]
pub struct Stats {
    /// Jobs read.
    pub jobs: AtomicU64,
    /// Collapsed notifications sent (to every device of their user).
    pub notifications: AtomicU64,
    pub delivered: AtomicU64,
    pub retried: AtomicU64,
    pub dead_lettered: AtomicU64,
    /// The user had a live session when the notification was due.
    pub skipped_live: AtomicU64,
    pub skipped_muted: AtomicU64,
    /// An earlier notification covered the job's seq (a repeat).
    pub skipped_covered: AtomicU64,
    pub skipped_no_device: AtomicU64,
    /// Unfinished notifications sent again after a restart or a rebalance.
    pub redelivered: AtomicU64,
    /// Notifications not sent because their user had too many under way
    /// (`per_user_pending`: endpoints that do not answer).
    pub dropped_backlog: AtomicU64,
}

/// Notifications collapsing or under way at once, at most; past it the role stops
/// reading jobs until some are done.
const MAX_PENDING: usize = 10_000;

/// Counts one in `c` (`GET /v1/stats`) and in `parley_push_notifications_total{result}`.
pub(crate) fn bump(c: &AtomicU64, result: &'static str) {
    c.fetch_add(1, Ordering::Relaxed);
    metrics::counter!(parley_ops::metrics::PUSHES, "result" => result).increment(1);
}

fn bump_by(c: &AtomicU64, n: u32, result: &'static str) {
    c.fetch_add(u64::from(n), Ordering::Relaxed);
    metrics::counter!(parley_ops::metrics::PUSHES, "result" => result).increment(u64::from(n));
}

pub(crate) struct Push {
    pub(crate) config: PushConfig,
    pub(crate) log: Arc<dyn EventLog>,
    pub(crate) devices: Arc<DeviceBook>,
    pub(crate) state: Arc<PushState>,
    pub(crate) presence: Arc<dyn PresenceStore>,
    pub(crate) views: Option<Arc<dyn Views>>,
    pub(crate) providers: HashMap<&'static str, Arc<dyn PushProvider>>,
    pub(crate) breakers: Mutex<Breakers>,
    pub(crate) stats: Arc<Stats>,
    pub(crate) permits: Semaphore,
    /// (user, conversation) of the notifications under way here.
    pub(crate) busy: Mutex<HashSet<(String, String)>>,
    /// Notifications under way here, per user.
    pub(crate) pending: Mutex<HashMap<String, usize>>,
    /// Each user's share of the request permits (see `deliver.rs`).
    pub(crate) user_permits: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// A user's notification under way: counted in [`Push::pending`] until dropped.
struct Pending<'a> {
    push: &'a Push,
    user: String,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        let mut all = self.push.pending.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = all.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                all.remove(&self.user);
            }
        }
    }
}

/// The push role: reads `push` as group `config.group` until `shutdown`; serves
/// `/healthz` and `/v1/stats` on `listener` if given.
pub async fn run(
    config: PushConfig,
    log: Arc<dyn EventLog>,
    views: Option<Arc<dyn Views>>,
    presence: Arc<dyn PresenceStore>,
    listener: Option<TcpListener>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let catch_up = Duration::from_secs(30);
    let topics = config.topics.clone();
    parley_ops::metrics::install();
    let positions = parley_ops::lag::watched(
        log.clone(),
        parley_ops::lag::LagCheck {
            role: "push",
            check: "push_caught_up",
            bound: config.ready_lag,
            every: Duration::from_secs(2),
        },
        config.health.clone(),
        shutdown.clone(),
    );
    let devices =
        DeviceBook::follow(log.clone(), &topics.devices, catch_up, shutdown.clone()).await?;
    let state =
        PushState::follow(log.clone(), &topics.push_state, catch_up, shutdown.clone()).await?;
    let webhook = WebhookProvider::new(
        config.secret.clone(),
        config.request_timeout,
        config.targets.clone(),
    )?;
    let mut providers: HashMap<&'static str, Arc<dyn PushProvider>> = HashMap::new();
    providers.insert(webhook.platform(), Arc::new(webhook));
    let stats = Arc::new(Stats::default());
    let push = Arc::new(Push {
        breakers: Mutex::new(Breakers::new(config.breaker_failures, config.breaker_open)),
        permits: Semaphore::new(config.in_flight.max(1)),
        config: config.clone(),
        log: log.clone(),
        devices,
        state,
        presence,
        views,
        providers,
        stats: stats.clone(),
        busy: Mutex::new(HashSet::new()),
        pending: Mutex::new(HashMap::new()),
        user_permits: Mutex::new(HashMap::new()),
    });
    if let Some(listener) = listener {
        let app = Router::new()
            .route(
                "/v1/stats",
                get(move || {
                    let stats = stats.clone();
                    async move { axum::Json(serde_json::to_value(&*stats).unwrap_or_default()) }
                }),
            )
            .merge(parley_ops::router(config.health.clone()));
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
        });
    }

    let mut sub = log.subscribe(&config.group, &topics.push).await?;
    info!(group = %config.group, topic = %topics.push, "push role reading jobs");
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Vec<(i32, i64)>>();
    let mut collapser = Collapser::new(config.collapse_window);
    let in_progress = Arc::new(AtomicUsize::new(0));
    // Per partition: offsets read but not handled yet, the next offset to read, and
    // what was committed last.
    let mut open: HashMap<i32, BTreeSet<i64>> = HashMap::new();
    let mut next: HashMap<i32, i64> = HashMap::new();
    let mut committed: HashMap<i32, i64> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            // Reading stops while too many notifications wait: jobs stay in the log,
            // not in memory.
            event = sub.next(), if collapser.len() + in_progress.load(Ordering::Relaxed) < MAX_PENDING => match event {
                None => break,
                Some(Err(e)) => {
                    warn!(error = %e, "push group read failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Some(Ok(GroupEvent::Assigned(parts))) => {
                    info!(?parts, "push partitions assigned");
                    for intent in push.state.unfinished(&parts) {
                        let push = push.clone();
                        tokio::spawn(async move { push.finish(intent).await });
                    }
                }
                Some(Ok(GroupEvent::Revoked(parts))) => {
                    info!(?parts, "push partitions revoked");
                    collapser.forget_partitions(&parts);
                    positions.forget(&topics.push, &parts);
                    for p in parts {
                        open.remove(&p);
                        next.remove(&p);
                        committed.remove(&p);
                    }
                }
                Some(Ok(GroupEvent::Record(r))) => {
                    next.insert(r.partition, r.offset + 1);
                    positions.at(&topics.push, r.partition, r.offset + 1);
                    let Some(value) = &r.value else { continue };
                    let job = match decode::<PushJob>(value) {
                        Ok(job) => job,
                        Err(e) => {
                            warn!(partition = r.partition, offset = r.offset, error = %e, "undecodable push job skipped");
                            continue;
                        }
                    };
                    bump(&push.stats.jobs, "jobs");
                    if push.skip_at_once(&job) {
                        debug!(user = %job.user_id, seq = job.seq, "job needs no push");
                        continue;
                    }
                    debug!(user = %job.user_id, seq = job.seq, partition = r.partition, offset = r.offset, "job");
                    open.entry(r.partition).or_default().insert(r.offset);
                    collapser.add(
                        Job {
                            partition: r.partition,
                            offset: r.offset,
                            push: job,
                        },
                        Instant::now(),
                    );
                }
            },
            Some(handled) = done_rx.recv() => {
                for (p, o) in handled {
                    if let Some(set) = open.get_mut(&p) {
                        set.remove(&o);
                    }
                }
            }
            _ = tick.tick() => {
                for c in collapser.due(Instant::now()) {
                    in_progress.fetch_add(1, Ordering::Relaxed);
                    let in_progress = in_progress.clone();
                    debug!(user = %c.user_id, first = c.first_seq, last = c.last_seq, count = c.count, "notification due");
                    let push = push.clone();
                    let done = done_tx.clone();
                    tokio::spawn(async move {
                        let offsets = c.offsets.clone();
                        push.notify(c).await;
                        in_progress.fetch_sub(1, Ordering::Relaxed);
                        let _ = done.send(offsets);
                    });
                }
                let mut offsets = Vec::new();
                for (&p, &n) in &next {
                    let upto = open.get(&p).and_then(|s| s.first().copied()).unwrap_or(n);
                    if committed.get(&p) != Some(&upto) {
                        offsets.push((p, upto));
                    }
                }
                if !offsets.is_empty() {
                    match sub.commit(&offsets) {
                        Ok(()) => committed.extend(offsets),
                        Err(e) => warn!(error = %e, "push commit failed; retried next tick"),
                    }
                }
            }
        }
    }
    info!("push role stopped");
    Ok(())
}

impl Push {
    /// Whether a job needs no notification whatever comes after it: an earlier
    /// notification covered its seq. (Mutes and devices are looked at when the
    /// collapsed notification is due: a setting made just before the message counts.)
    fn skip_at_once(&self, job: &PushJob) -> bool {
        let covered = self
            .state
            .covered(&job.user_id, &job.conversation_id)
            .is_some_and(|c| c >= job.seq);
        if covered {
            bump(&self.stats.skipped_covered, "skipped_covered");
        }
        covered
    }

    /// Counts a notification of `user` as under way; None if the user has
    /// `per_user_pending` under way already.
    fn start_pending(&self, user: &str) -> Option<Pending<'_>> {
        let mut all = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let n = all.entry(user.to_string()).or_default();
        if *n >= self.config.per_user_pending.max(1) {
            return None;
        }
        *n += 1;
        Some(Pending {
            push: self,
            user: user.to_string(),
        })
    }

    /// Handles one collapsed notification to the end: sent to every device,
    /// dead-lettered, or not needed.
    async fn notify(&self, c: Collapsed) {
        let user = c.user_id.clone();
        let Some(_pending) = self.start_pending(&user) else {
            warn!(user = %user, conversation = %c.conversation_id, "too many notifications of this user under way (its endpoints do not answer): not pushed");
            bump_by(&self.stats.dropped_backlog, c.count, "dropped_backlog");
            return;
        };
        let key = (user.clone(), c.conversation_id.clone());
        match self.presence.lookup(std::slice::from_ref(&user)).await {
            Ok(seen) if seen.first().is_some_and(|s| s.online) => {
                debug!(user = %user, "online: not pushed");
                bump_by(&self.stats.skipped_live, c.count, "skipped_live");
                return;
            }
            Ok(_) => {}
            Err(e) => warn!(user = %user, error = %e, "presence unknown; pushing anyway"),
        }
        if self
            .state
            .covered(&user, &c.conversation_id)
            .is_some_and(|s| s >= c.last_seq)
        {
            bump_by(&self.stats.skipped_covered, c.count, "skipped_covered");
            return;
        }
        let mut devices = self.devices.devices(&user);
        if devices.is_empty() {
            // A device registered a moment ago may not be read here yet.
            self.devices.catch_up(Duration::from_secs(5)).await;
            devices = self.devices.devices(&user);
        }
        if devices.is_empty() {
            bump_by(&self.stats.skipped_no_device, c.count, "skipped_no_device");
            return;
        }
        // A mention pushes even where the user muted the conversation (Slack's and
        // Zulip's norm).
        if self.devices.is_muted(&user, &c.conversation_id) && !c.mentioned {
            bump_by(&self.stats.skipped_muted, c.count, "skipped_muted");
            return;
        }
        let badge = self.badge(&user).await;
        let now = now_millis();
        let intent = Intent {
            user_id: user.clone(),
            conversation_id: c.conversation_id.clone(),
            first_seq: c.first_seq,
            last_seq: c.last_seq,
            done: false,
            notifications: devices
                .iter()
                .map(|d| Notification::build(&c, &d.device_id, badge, now))
                .collect(),
        };
        self.lock_busy().insert(key.clone());
        if let Err(e) = self.state.write(&intent).await {
            warn!(user = %user, error = %e, "push intent not written; sending anyway");
        }
        bump(&self.stats.notifications, "notifications");
        self.send_all(&intent, &devices, c.offsets.first().copied())
            .await;
        self.mark_done(intent).await;
        self.lock_busy().remove(&key);
    }

    /// An intent a member wrote and did not finish: sent again as it was.
    async fn finish(&self, intent: Intent) {
        let key = (intent.user_id.clone(), intent.conversation_id.clone());
        let Some(_pending) = self.start_pending(&intent.user_id) else {
            warn!(user = %intent.user_id, "too many notifications of this user under way: an unfinished one is not sent again");
            bump(&self.stats.dropped_backlog, "dropped_backlog");
            return;
        };
        if !self.lock_busy().insert(key.clone()) {
            return;
        }
        let devices = self.devices.devices(&intent.user_id);
        info!(user = %intent.user_id, conversation = %intent.conversation_id, "sending an unfinished notification again");
        bump(&self.stats.redelivered, "redelivered");
        self.send_all(&intent, &devices, None).await;
        self.mark_done(intent).await;
        self.lock_busy().remove(&key);
    }

    fn lock_busy(&self) -> std::sync::MutexGuard<'_, HashSet<(String, String)>> {
        self.busy.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn mark_done(&self, mut intent: Intent) {
        intent.done = true;
        if let Err(e) = self.state.write(&intent).await {
            warn!(user = %intent.user_id, error = %e, "push intent not marked done: it may be sent again (same id)");
        }
    }

    async fn send_all(&self, intent: &Intent, devices: &[Device], source: Option<(i32, i64)>) {
        let sends = intent.notifications.iter().filter_map(|n| {
            let device = devices.iter().find(|d| d.device_id == n.device_id)?;
            Some(self.deliver(device, n, source))
        });
        futures::future::join_all(sends).await;
    }

    /// The user's unread count over all conversations, if the views answer soon.
    async fn badge(&self, user: &str) -> Option<u64> {
        let views = self.views.as_ref()?;
        let list =
            tokio::time::timeout(Duration::from_secs(2), views.user_conversations(user, true))
                .await
                .ok()?
                .ok()?;
        Some(list.iter().map(|c| c.unread).sum())
    }
}
