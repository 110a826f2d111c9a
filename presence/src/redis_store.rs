//! [`RedisPresence`]: presence in Redis, with TTL keys refreshed by heartbeats.
//!
//! Keys, under a prefix (`parley:` by default):
//! - `{p}devices:{user}`: a sorted set of the user's devices (gateway slots), scored by
//!   when each expires; the key itself expires with the last of them.
//! - `{p}last_seen:{user}`: when the user's last device went away.
//! - `{p}expiries`: every `user\x1fdevice`, scored by when it expires. Each store sweeps
//!   it every 500 ms; whoever removes an expired member first records the lapse and
//!   tells the others.
//! - channel `{p}changes`: user ids whose state may have changed.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use parley_schemas::now_millis;
use redis::aio::ConnectionManager;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::store::{seen_of, PresenceStore, Result, Seen, CHANGES};

/// How long `last_seen` is kept after the user went away.
const LAST_SEEN_KEPT: Duration = Duration::from_secs(90 * 24 * 3600);
/// Expired members removed per sweep, at most.
const SWEEP_BATCH: usize = 1000;

pub struct RedisPresence {
    conn: ConnectionManager,
    prefix: String,
    changes: broadcast::Sender<String>,
}

impl RedisPresence {
    /// Connects to `url` (`redis://host:port/db`); keys go under `prefix`. Sweeps and
    /// listens for changes until `shutdown`.
    pub async fn connect(
        url: &str,
        prefix: &str,
        shutdown: CancellationToken,
    ) -> Result<Arc<Self>> {
        let client = redis::Client::open(url)?;
        let conn = ConnectionManager::new(client.clone()).await?;
        let store = Arc::new(RedisPresence {
            conn,
            prefix: prefix.to_string(),
            changes: broadcast::channel(CHANGES).0,
        });
        // Subscribed before returning, so no change after `connect` is missed; a lost
        // connection is subscribed again (changes in between are not heard).
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(store.channel()).await?;
        let listener = store.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            loop {
                let mut messages = pubsub.into_on_message();
                loop {
                    let msg = tokio::select! {
                        _ = stop.cancelled() => return,
                        m = messages.next() => m,
                    };
                    let Some(m) = msg else { break };
                    if let Ok(user) = m.get_payload::<String>() {
                        let _ = listener.changes.send(user);
                    }
                }
                warn!("redis presence channel lost; subscribing again");
                pubsub = loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                    let again = async {
                        let mut p = client.get_async_pubsub().await?;
                        p.subscribe(listener.channel()).await?;
                        Ok::<_, redis::RedisError>(p)
                    };
                    match again.await {
                        Ok(p) => break p,
                        Err(e) => warn!(error = %e, "redis presence channel: retrying"),
                    }
                };
            }
        });
        let sweeper = store.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => {}
                }
                if let Err(e) = sweeper.sweep().await {
                    warn!(error = %e, "redis presence sweep failed");
                }
            }
        });
        Ok(store)
    }

    fn devices_key(&self, user: &str) -> String {
        format!("{}devices:{user}", self.prefix)
    }

    fn last_seen_key(&self, user: &str) -> String {
        format!("{}last_seen:{user}", self.prefix)
    }

    fn expiries_key(&self) -> String {
        format!("{}expiries", self.prefix)
    }

    fn channel(&self) -> String {
        format!("{}changes", self.prefix)
    }

    /// Records the lapse of every expired device; tells the others of each.
    async fn sweep(&self) -> Result<()> {
        let now = now_millis();
        let mut conn = self.conn.clone();
        let expired: Vec<(String, i64)> = redis::cmd("ZRANGE")
            .arg(self.expiries_key())
            .arg("-inf")
            .arg(now)
            .arg("BYSCORE")
            .arg("LIMIT")
            .arg(0)
            .arg(SWEEP_BATCH)
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await?;
        for (member, expires) in expired {
            let removed: i64 = redis::cmd("ZREM")
                .arg(self.expiries_key())
                .arg(&member)
                .query_async(&mut conn)
                .await?;
            if removed == 0 {
                continue; // another store took it, or it was refreshed meanwhile
            }
            let Some((user, device)) = member.split_once('\x1f') else {
                continue;
            };
            // The device may have been refreshed between the read and the removal.
            let score: Option<i64> = redis::cmd("ZSCORE")
                .arg(self.devices_key(user))
                .arg(device)
                .query_async(&mut conn)
                .await?;
            if let Some(s) = score {
                if s > now {
                    let _: () = redis::cmd("ZADD")
                        .arg(self.expiries_key())
                        .arg(s)
                        .arg(&member)
                        .query_async(&mut conn)
                        .await?;
                    continue;
                }
            }
            self.end_device(user, device, expires).await?;
        }
        Ok(())
    }

    fn member(user: &str, device: impl std::fmt::Display) -> String {
        format!("{user}\x1f{device}")
    }

    /// `device` of `user` ended at `at`: it is removed, `last_seen` is set, and the
    /// change is told.
    async fn end_device(&self, user: &str, device: &str, at: i64) -> Result<()> {
        let mut conn = self.conn.clone();
        let _: () = redis::pipe()
            .atomic()
            .cmd("ZREM")
            .arg(self.devices_key(user))
            .arg(device)
            .ignore()
            .cmd("ZREM")
            .arg(self.expiries_key())
            .arg(Self::member(user, device))
            .ignore()
            .cmd("SET")
            .arg(self.last_seen_key(user))
            .arg(at)
            .arg("PX")
            .arg(LAST_SEEN_KEPT.as_millis() as u64)
            .ignore()
            .cmd("PUBLISH")
            .arg(self.channel())
            .arg(user)
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl PresenceStore for RedisPresence {
    async fn refresh(&self, user: &str, device: i32, ttl: Duration) -> Result<()> {
        let expires = now_millis() + ttl.as_millis() as i64;
        let mut conn = self.conn.clone();
        let key = self.devices_key(user);
        let (added,): (i64,) = redis::pipe()
            .atomic()
            .cmd("ZADD")
            .arg(&key)
            .arg(expires)
            .arg(device)
            .cmd("PEXPIRE")
            .arg(&key)
            // Kept a while past the TTL, so that the sweep still finds the lapse.
            .arg(2 * ttl.as_millis() as u64 + 60_000)
            .ignore()
            .cmd("ZADD")
            .arg(self.expiries_key())
            .arg(expires)
            .arg(Self::member(user, device))
            .ignore()
            .query_async(&mut conn)
            .await?;
        if added > 0 {
            let _: () = redis::cmd("PUBLISH")
                .arg(self.channel())
                .arg(user)
                .query_async(&mut conn)
                .await?;
        }
        Ok(())
    }

    async fn gone(&self, user: &str, device: i32) -> Result<()> {
        self.end_device(user, &device.to_string(), now_millis())
            .await
    }

    async fn lookup(&self, users: &[String]) -> Result<Vec<Seen>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        for user in users {
            pipe.cmd("ZRANGE")
                .arg(self.devices_key(user))
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES")
                .cmd("GET")
                .arg(self.last_seen_key(user));
        }
        let replies: Vec<redis::Value> = pipe.query_async(&mut conn).await?;
        let now = now_millis();
        let mut out = Vec::with_capacity(users.len());
        for pair in replies.chunks(2) {
            let devices: Vec<(String, i64)> = redis::from_redis_value_ref(&pair[0])?;
            let last: Option<i64> = match pair.get(1) {
                Some(v) => redis::from_redis_value_ref(v)?,
                None => None,
            };
            out.push(seen_of(devices.into_iter().map(|(_, e)| e), last, now));
        }
        Ok(out)
    }

    fn changes(&self) -> broadcast::Receiver<String> {
        self.changes.subscribe()
    }
}
