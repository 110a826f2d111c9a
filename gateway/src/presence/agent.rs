//! Presence: this gateway tells the log who is connected to it: one record per user,
//! keyed `user/slot`, when the user's first session here opens, and a tombstone when
//! their last one closes; and the slot's lease ([`SlotLease`]), renewed every heartbeat,
//! which keeps every record this run of the gateway wrote alive. So a heartbeat costs
//! one record, however many users are connected; a gateway that dies stops renewing
//! its lease, and all its users go offline together when it lapses.
//!
//! When a user's first session opens, its presence record asks for acknowledgements;
//! the session is *live* once acknowledgements from fanout-workers cover every
//! partition of `events`: from then on every message to the user is routed here.
//! Until then every heartbeat writes the user's record again, asking again, so a worker
//! that takes partitions over later (after a failover, or while no worker ran) still
//! acknowledges the user.
//!
//! A user whose presence has lapsed (the lease was not renewed for a whole TTL) is routed
//! to the inbox by the workers; the gateway then closes that user's sessions
//! ([`crate::ws::CLOSE_PRESENCE_LAPSED`]) so that the clients reconnect and sync rather
//! than sit deaf. A heartbeat that races the close of the user's last session is
//! followed by a second tombstone, so no stale record outlives the session.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use parley_schemas::{decode, encode, now_millis, Meta, PresenceAcked, PresenceUpdated, SlotLease};
use parley_sequencer::{EventLog, Position, StartAt};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::config::GatewayConfig;

/// Heartbeat (and startup tombstone) records in flight at once.
const HEARTBEATS_IN_FLIGHT: usize = 256;

#[derive(Default)]
struct UserPresence {
    sessions: usize,
    /// Where this user's latest acknowledged-for presence record is.
    pending: Option<Position>,
    /// Partitions of `events` acknowledged, each with the first offset the worker routes
    /// with the user online.
    covered: BTreeMap<i32, i64>,
    live: bool,
    /// Acknowledgements that came before `pending` was known.
    early: Vec<PresenceAcked>,
    notify: Arc<Notify>,
    /// Unique per entry: a heartbeat that finds another epoch (or none) after its
    /// append raced a close.
    epoch: u64,
    /// `expires_at` of the newest record of this user the log confirmed (0: none).
    confirmed_until: i64,
    /// A record landed after the previous one had expired: the workers saw the user
    /// offline in between.
    lapsed: bool,
}

pub struct PresenceAgent {
    log: Arc<dyn EventLog>,
    config: GatewayConfig,
    partitions: usize,
    users: Mutex<HashMap<String, UserPresence>>,
    /// While anyone is live here: per partition of `events`, the offsets from which the
    /// workers have routed to this slot without a break (those of the first user who
    /// made it live). Taken after `users`, never before.
    active_since: Mutex<Option<Vec<(i32, i64)>>>,
    epochs: AtomicU64,
    /// An external presence store (Redis) that gets every heartbeat and end too.
    mirror: Option<Arc<dyn parley_presence::PresenceStore>>,
    /// When this run began: the slot's lease keeps the records written since.
    since: i64,
    /// `expires_at` of the newest lease the log confirmed (0: none yet).
    lease_until: Mutex<i64>,
}

impl PresenceAgent {
    /// `partitions`: how many partitions `events` has (acknowledgements must cover them all).
    pub fn new(log: Arc<dyn EventLog>, config: GatewayConfig, partitions: usize) -> Self {
        PresenceAgent {
            log,
            config,
            partitions,
            users: Mutex::new(HashMap::new()),
            active_since: Mutex::new(None),
            epochs: AtomicU64::new(0),
            mirror: None,
            since: now_millis(),
            lease_until: Mutex::new(0),
        }
    }

    /// Also writes every heartbeat and end to `store` (the log-derived store needs
    /// nothing more: it reads these records).
    pub fn mirrored_to(mut self, store: Option<Arc<dyn parley_presence::PresenceStore>>) -> Self {
        self.mirror = store;
        self
    }

    async fn mirror_refresh(&self, user: &str) {
        if let Some(store) = &self.mirror {
            let slot = self.config.gateway_id;
            if let Err(e) = store.refresh(user, slot, self.config.presence_ttl).await {
                warn!(user, error = %e, "presence store not refreshed");
            }
        }
    }

    async fn mirror_gone(&self, user: &str) {
        if let Some(store) = &self.mirror {
            if let Err(e) = store.gone(user, self.config.gateway_id).await {
                warn!(user, error = %e, "presence store not told of the end; it expires by itself");
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, UserPresence>> {
        self.users.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn meta(&self) -> Meta {
        let mut meta = Meta::new(format!("gateway:{}", self.config.gateway_id));
        // Never before the lease's `since`, even if the clock stepped back: the lease
        // keeps only records written at or after it.
        meta.occurred_at = meta.occurred_at.max(self.since);
        meta
    }

    fn record(&self, user: &str, sessions: usize, ack: bool) -> PresenceUpdated {
        PresenceUpdated {
            meta: self.meta(),
            user_id: user.to_string(),
            gateway_slot: self.config.gateway_id,
            sessions: sessions as i32,
            expires_at: now_millis() + self.config.presence_ttl.as_millis() as i64,
            ack,
        }
    }

    /// Publishes a presence record; where it landed and when it expires.
    async fn publish(
        &self,
        user: &str,
        sessions: usize,
        ack: bool,
    ) -> parley_sequencer::Result<(Position, i64)> {
        let key = PresenceUpdated::key(user, self.config.gateway_id);
        let record = self.record(user, sessions, ack);
        let value =
            encode(&record).map_err(|e| parley_sequencer::Error::Rejected(e.to_string()))?;
        let pos = self
            .log
            .append(&self.config.topics.presence, key.as_bytes(), Some(&value))
            .await?;
        self.mirror_refresh(user).await;
        Ok((pos, record.expires_at))
    }

    async fn tombstone(&self, user: &str) -> parley_sequencer::Result<Position> {
        let key = PresenceUpdated::key(user, self.config.gateway_id);
        let pos = self
            .log
            .append(&self.config.topics.presence, key.as_bytes(), None)
            .await;
        self.mirror_gone(user).await;
        pos
    }

    /// A session of `user` opened: the user's presence here is published (by its first
    /// session), asking fanout-workers to acknowledge it.
    pub async fn session_opened(&self, user: &str) {
        let epoch = {
            let mut users = self.lock();
            let entry = users.entry(user.to_string()).or_default();
            entry.sessions += 1;
            if entry.sessions > 1 {
                return;
            }
            entry.epoch = self.epochs.fetch_add(1, Ordering::Relaxed) + 1;
            entry.epoch
        };
        match self.publish(user, 1, true).await {
            Ok((pos, expires_at)) => {
                let mut users = self.lock();
                if let Some(entry) = users.get_mut(user).filter(|e| e.epoch == epoch) {
                    entry.pending = Some(pos);
                    entry.confirmed_until = expires_at;
                    let early = std::mem::take(&mut entry.early);
                    for ack in early {
                        Self::absorb(entry, &ack, self.partitions);
                    }
                }
            }
            Err(e) => {
                warn!(user, error = %e, "publishing presence failed; the next heartbeat retries")
            }
        }
    }

    /// Whether `user` counts as present here (a session, or a long poll's linger).
    pub fn holds(&self, user: &str) -> bool {
        self.lock().contains_key(user)
    }

    /// Whether `user` is live here now: every message to the user is routed here.
    pub fn is_live(&self, user: &str) -> bool {
        self.lock().get(user).is_some_and(|e| e.live)
    }

    /// Once `user` is live here: per partition of `events`, the offsets from which the
    /// workers have routed to this gateway without a break (since the first of the users
    /// live here now became live). Every record from there on reaches this slot; what
    /// came before is for the views to hold.
    pub fn routed_since(&self, user: &str) -> Option<Vec<(i32, i64)>> {
        let users = self.lock();
        let e = users.get(user).filter(|e| e.live)?;
        let own: Vec<(i32, i64)> = e.covered.iter().map(|(p, o)| (*p, *o)).collect();
        let since = self
            .active_since
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Some(since.unwrap_or(own))
    }

    /// Waits, at most `timeout`, until `user` is live here: until every message to the
    /// user appended from now on will be routed to this gateway.
    pub async fn wait_live(&self, user: &str, timeout: Duration) -> bool {
        let Some(notify) = self.lock().get(user).map(|e| e.notify.clone()) else {
            return false;
        };
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = notify.notified();
            if self.lock().get(user).is_some_and(|e| e.live) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let covered = self.lock().get(user).map(|e| e.covered.len()).unwrap_or(0);
                debug!(
                    user,
                    covered,
                    partitions = self.partitions,
                    "presence not acknowledged yet"
                );
                return false;
            }
        }
    }

    fn absorb(entry: &mut UserPresence, ack: &PresenceAcked, partitions: usize) {
        let Some(pos) = entry.pending else {
            entry.early.push(ack.clone());
            return;
        };
        if ack.presence_partition != pos.partition || ack.presence_offset < pos.offset {
            return;
        }
        for (p, o) in ack.partitions.iter().zip(&ack.next_offsets) {
            let at = entry.covered.entry(*p).or_insert(*o);
            *at = (*at).max(*o);
        }
        if entry.covered.len() >= partitions && !entry.live {
            entry.live = true;
            entry.notify.notify_waiters();
        }
    }

    /// A fanout-worker acknowledged a presence record of this gateway.
    pub fn on_ack(&self, ack: &PresenceAcked) {
        let mut users = self.lock();
        if let Some(entry) = users.get_mut(&ack.user_id) {
            Self::absorb(entry, ack, self.partitions);
            if entry.live {
                let mut since = self.active_since.lock().unwrap_or_else(|p| p.into_inner());
                if since.is_none() {
                    *since = Some(entry.covered.iter().map(|(p, o)| (*p, *o)).collect());
                }
            }
            debug!(user = %ack.user_id, covered = entry.covered.len(), live = entry.live, "presence acknowledged");
        }
    }

    /// A session of `user` closed; the last one ends the user's presence here.
    pub async fn session_closed(&self, user: &str) {
        let last = {
            let mut users = self.lock();
            match users.get_mut(user) {
                Some(e) if e.sessions > 1 => {
                    e.sessions -= 1;
                    false
                }
                Some(_) => {
                    users.remove(user);
                    if !users.values().any(|e| e.live) {
                        // Nobody live here: routing to this slot may stop.
                        *self.active_since.lock().unwrap_or_else(|p| p.into_inner()) = None;
                    }
                    true
                }
                None => false,
            }
        };
        if last {
            if let Err(e) = self.tombstone(user).await {
                warn!(user, error = %e, "presence tombstone failed; the record expires by itself");
            }
        }
    }

    /// Refreshes every connected user's presence until `shutdown`. After each round,
    /// `lapsed` is called with the users whose presence the workers no longer see
    /// (every heartbeat for a whole TTL failed).
    pub async fn heartbeat(
        self: Arc<Self>,
        lapsed: impl Fn(&str) + Send + Sync,
        shutdown: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(self.config.heartbeat);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            for user in self.heartbeat_round().await {
                warn!(user = %user, "presence lapsed; closing the user's sessions so they resync");
                lapsed(&user);
            }
        }
    }

    /// Renews this slot's lease. Returns until when the lease lived before this renewal
    /// (0: no lease yet), and when the renewal landed; if it failed, the lease's expiry
    /// and now. A user whose own record expired before that moment, with no lease
    /// covering, was offline to the workers in between.
    async fn renew_lease(&self) -> (i64, i64) {
        let lease = SlotLease {
            meta: self.meta(),
            gateway_slot: self.config.gateway_id,
            since: self.since,
            expires_at: now_millis() + self.config.presence_ttl.as_millis() as i64,
        };
        let key = SlotLease::key(self.config.gateway_id);
        let appended = match encode(&lease) {
            Ok(value) => {
                self.log
                    .append(&self.config.topics.presence, key.as_bytes(), Some(&value))
                    .await
            }
            Err(e) => Err(parley_sequencer::Error::Rejected(e.to_string())),
        };
        let mut until = self.lease_until.lock().unwrap_or_else(|p| p.into_inner());
        let before = *until;
        if let Err(e) = appended {
            warn!(error = %e, "presence lease not renewed; the next heartbeat retries");
        } else {
            *until = before.max(lease.expires_at);
        }
        (before, now_millis())
    }

    /// One heartbeat: the slot's lease, and the record of every user not live yet (which
    /// asks the workers again); returns the users whose presence lapsed.
    async fn heartbeat_round(&self) -> Vec<String> {
        // (user, sessions, epoch, ask for acknowledgements)
        let users: Vec<(String, usize, u64, bool)> = self
            .lock()
            .iter()
            .map(|(u, e)| (u.clone(), e.sessions, e.epoch, !e.live))
            .collect();
        let (lease_before, at) = self.renew_lease().await;
        // Many at once: one round trip per heartbeat, not one per user.
        futures::stream::iter(users)
            .for_each_concurrent(
                HEARTBEATS_IN_FLIGHT,
                |(user, sessions, epoch, ask)| async move {
                    if !ask {
                        // Live: the lease keeps the user's record; only an external
                        // store (with TTLs of its own) hears of the user again.
                        self.mirror_refresh(&user).await;
                        return;
                    }
                    match self.publish(&user, sessions, ask).await {
                        Ok((pos, expires_at)) => {
                            self.heartbeat_landed(&user, epoch, ask, pos, expires_at, lease_before)
                                .await
                        }
                        Err(e) => warn!(user, error = %e, "presence heartbeat failed"),
                    }
                },
            )
            .await;
        // A user whose first record has not landed yet (a session opened during this
        // round) has nothing that could have expired. Anyone else is present while their
        // own record or the lease lives, and lapsed if both had expired before the lease
        // was renewed (or, if it was not, by now).
        self.lock()
            .iter_mut()
            .filter(|(_, e)| {
                e.epoch != 0
                    && (e.lapsed
                        || (e.confirmed_until != 0 && e.confirmed_until.max(lease_before) <= at))
            })
            .map(|(u, e)| {
                e.lapsed = false;
                u.clone()
            })
            .collect()
    }

    async fn heartbeat_landed(
        &self,
        user: &str,
        epoch: u64,
        ask: bool,
        pos: Position,
        expires_at: i64,
        lease_before: i64,
    ) {
        let ended = {
            let mut users = self.lock();
            match users.get_mut(user) {
                Some(e) if e.epoch == epoch => {
                    // Neither this user's previous record nor the lease (as it was before
                    // this round) lived until this record landed.
                    if e.confirmed_until != 0 && e.confirmed_until.max(lease_before) <= now_millis()
                    {
                        e.lapsed = true;
                    }
                    e.confirmed_until = e.confirmed_until.max(expires_at);
                    if ask && !e.live {
                        // Acknowledgements of this record count (a worker may have
                        // taken partitions over since the first one).
                        e.pending = Some(pos);
                        let early = std::mem::take(&mut e.early);
                        for ack in early {
                            Self::absorb(e, &ack, self.partitions);
                        }
                    }
                    false
                }
                Some(_) => false,
                None => true,
            }
        };
        if ended {
            // The user's last session closed while this heartbeat was in flight: its
            // tombstone may have landed first. End the presence again.
            if let Err(e) = self.tombstone(user).await {
                warn!(user, error = %e, "presence tombstone failed; the record expires by itself");
            }
        }
    }

    /// Ends whatever presence an earlier run of this slot left behind (a crash leaves
    /// its users "online" here until their records expire; until then their messages
    /// would be routed here instead of to their inboxes). Reads `presence` up to its
    /// end as of now, at most `limit` long, and tombstones this slot's live records.
    /// Returns how many it ended.
    pub async fn clear_stale(&self, limit: Duration) -> parley_sequencer::Result<usize> {
        let topic = &self.config.topics.presence;
        let ends = self.log.end_offsets(topic).await?;
        let mut open: HashMap<i32, i64> = ends
            .iter()
            .enumerate()
            .filter(|(_, end)| **end > 0)
            .map(|(p, end)| (p as i32, *end))
            .collect();
        if open.is_empty() {
            return Ok(0);
        }
        let from: Vec<(i32, StartAt)> = open.keys().map(|p| (*p, StartAt::Beginning)).collect();
        let mut stream = self.log.read(topic, &from).await?;
        let mut stale: BTreeSet<Vec<u8>> = BTreeSet::new();
        let deadline = tokio::time::Instant::now() + limit;
        while !open.is_empty() {
            let next = match tokio::time::timeout_at(deadline, stream.next()).await {
                Ok(Some(r)) => r?,
                Ok(None) => break,
                Err(_) => {
                    warn!("presence not read to its end in time; stale records left to expire");
                    break;
                }
            };
            if open
                .get(&next.partition)
                .is_some_and(|end| next.offset + 1 >= *end)
            {
                open.remove(&next.partition);
            }
            let Some(key) = next.key else { continue };
            let mine = next
                .value
                .as_deref()
                .and_then(|v| decode::<PresenceUpdated>(v).ok())
                .is_some_and(|u| u.gateway_slot == self.config.gateway_id);
            if mine {
                stale.insert(key.to_vec());
            } else {
                stale.remove(key.as_ref());
            }
        }
        let ended = stale.len();
        futures::stream::iter(stale)
            .map(|key| async move { self.log.append(topic, &key, None).await })
            .buffer_unordered(HEARTBEATS_IN_FLIGHT)
            .try_collect::<Vec<_>>()
            .await?;
        Ok(ended)
    }

    /// Ends the presence of every user still connected (on shutdown).
    pub async fn clear(&self) {
        let users: Vec<String> = self.lock().drain().map(|(u, _)| u).collect();
        let waits = users.iter().map(|user| {
            let key = PresenceUpdated::key(user, self.config.gateway_id);
            let topic = self.config.topics.presence.clone();
            let log = self.log.clone();
            async move {
                let _ = tokio::time::timeout(
                    Duration::from_secs(2),
                    log.append(&topic, key.as_bytes(), None),
                )
                .await;
                let _ = tokio::time::timeout(Duration::from_secs(2), self.mirror_gone(user)).await;
            }
        });
        futures::future::join_all(waits).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use parley_sequencer::{
        Lease, RecordStream, Subscription, TopicReport, TopicSettings, TopicSpec,
    };
    use std::sync::atomic::AtomicI64;
    use tokio::sync::Semaphore;

    /// A log whose presence appends for a user wait until that user's gate is opened.
    #[derive(Default)]
    struct GatedLog {
        next: AtomicI64,
        gates: Mutex<HashMap<String, Arc<Semaphore>>>,
    }

    impl GatedLog {
        fn close(&self, user: &str) {
            self.gates
                .lock()
                .unwrap()
                .insert(user.to_string(), Arc::new(Semaphore::new(0)));
        }
        fn open(&self, user: &str) {
            if let Some(g) = self.gates.lock().unwrap().get(user) {
                g.add_permits(1 << 20);
            }
        }
    }

    #[async_trait]
    impl EventLog for GatedLog {
        async fn append(
            &self,
            _topic: &str,
            key: &[u8],
            _value: Option<&[u8]>,
        ) -> parley_sequencer::Result<Position> {
            let user = String::from_utf8_lossy(key);
            let user = user.split('/').next().unwrap_or_default().to_string();
            let gate = self.gates.lock().unwrap().get(&user).cloned();
            if let Some(g) = gate {
                let _ = g.acquire().await;
            }
            let offset = self.next.fetch_add(1, Ordering::Relaxed);
            Ok(Position {
                partition: 0,
                offset,
            })
        }
        async fn append_to(
            &self,
            topic: &str,
            _partition: i32,
            key: &[u8],
            value: Option<&[u8]>,
        ) -> parley_sequencer::Result<Position> {
            self.append(topic, key, value).await
        }
        async fn read(
            &self,
            _topic: &str,
            _from: &[(i32, StartAt)],
        ) -> parley_sequencer::Result<RecordStream> {
            Ok(Box::pin(futures::stream::pending()))
        }
        async fn end_offsets(&self, _topic: &str) -> parley_sequencer::Result<Vec<i64>> {
            Ok(vec![0])
        }
        async fn start_offsets(&self, _topic: &str) -> parley_sequencer::Result<Vec<i64>> {
            Ok(vec![0])
        }
        async fn partition_count(&self, _topic: &str) -> parley_sequencer::Result<i32> {
            Ok(1)
        }
        async fn broker_count(&self) -> parley_sequencer::Result<usize> {
            Ok(1)
        }
        async fn provision(
            &self,
            _specs: &[TopicSpec],
        ) -> parley_sequencer::Result<Vec<TopicReport>> {
            Ok(vec![])
        }
        async fn describe(
            &self,
            _specs: &[TopicSpec],
        ) -> parley_sequencer::Result<Vec<TopicReport>> {
            Ok(vec![])
        }
        async fn subscribe(
            &self,
            _group: &str,
            _topic: &str,
        ) -> parley_sequencer::Result<Box<dyn Subscription>> {
            Err(parley_sequencer::Error::Rejected("not used here".into()))
        }
        async fn lease(&self, _name: &str, _topic: &str) -> parley_sequencer::Result<Lease> {
            Err(parley_sequencer::Error::Rejected("not used here".into()))
        }
    }

    /// A user whose first session opens while a heartbeat round runs, and whose first
    /// presence record has not landed when the round ends, has not lapsed: nothing of
    /// theirs has expired yet. (Seen as a burst of `presence_lapsed` closes while 2,000
    /// sessions connected at once.)
    #[tokio::test]
    async fn a_session_opened_during_a_round_has_not_lapsed() {
        let log = Arc::new(GatedLog::default());
        let config = GatewayConfig::new(
            0,
            TopicSettings::default().names(),
            "a-secret-of-thirty-two-bytes-or-more",
        );
        let agent = Arc::new(PresenceAgent::new(log.clone(), config, 1));
        agent.session_opened("a").await;

        // The round's heartbeat of `a` is held, so the round is under way…
        log.close("a");
        let round = tokio::spawn({
            let agent = agent.clone();
            async move { agent.heartbeat_round().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        // …when `b` connects, and `b`'s first record is slow to land.
        log.close("b");
        let opening = tokio::spawn({
            let agent = agent.clone();
            async move { agent.session_opened("b").await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        log.open("a");
        let lapsed = round.await.unwrap();
        assert!(lapsed.is_empty(), "lapsed: {lapsed:?}");

        log.open("b");
        opening.await.unwrap();
        assert!(agent.heartbeat_round().await.is_empty());
    }

    /// Opens a session of `user` and acknowledges it on the one partition: live.
    async fn open_live(agent: &PresenceAgent, user: &str) {
        agent.session_opened(user).await;
        let pos = agent.lock().get(user).and_then(|e| e.pending).unwrap();
        agent.on_ack(&PresenceAcked {
            meta: Meta::new("fanout:w0"),
            gateway_slot: 0,
            user_id: user.into(),
            presence_partition: pos.partition,
            presence_offset: pos.offset,
            partitions: vec![0],
            next_offsets: vec![0],
        });
        assert!(agent.is_live(user));
    }

    /// A live user writes nothing per heartbeat: the lease keeps them. When the lease
    /// is not renewed for a whole TTL (the gateway hung), they lapse with it.
    #[tokio::test]
    async fn a_live_user_lapses_with_the_lease() {
        let log = Arc::new(GatedLog::default());
        let mut config = GatewayConfig::new(
            0,
            TopicSettings::default().names(),
            "a-secret-of-thirty-two-bytes-or-more",
        );
        config.presence_ttl = Duration::from_millis(300);
        let agent = Arc::new(PresenceAgent::new(log.clone(), config, 1));
        open_live(&agent, "bob").await;
        assert!(agent.heartbeat_round().await.is_empty());
        let written = log.next.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(agent.heartbeat_round().await.is_empty(), "renewed in time");
        assert_eq!(
            log.next.load(Ordering::Relaxed),
            written + 1,
            "one record: the lease"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(agent.heartbeat_round().await, vec!["bob".to_string()]);
        assert!(agent.heartbeat_round().await.is_empty(), "told once");

        // A gateway that hangs before its first lease lands: the user's own record
        // expires with nothing to cover it, and the first lease is too late.
        let fresh = Arc::new(PresenceAgent::new(log.clone(), agent.config.clone(), 1));
        open_live(&fresh, "amy").await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(fresh.heartbeat_round().await, vec!["amy".to_string()]);
    }
}
