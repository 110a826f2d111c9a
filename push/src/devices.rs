//! [`DeviceBook`]: every user's settings (push devices, muted conversations, whether
//! their presence is hidden), read from the compacted `devices` topic, and the writes
//! that change them.
//!
//! The topic is keyed `user/device/<id>`, `user/mute/<conversation>`,
//! `user/optin/<conversation>` and `user/privacy/presence`, and each record goes to the
//! partition of its user, so one user's settings stay in one order. Every reader reads
//! the whole topic (a few hundred bytes per device).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use parley_schemas::{
    decode_any, encode, AnyRecord, ConversationMuted, DeviceRegistered, Meta, PresenceVisibility,
    PushOptedIn,
};
use parley_sequencer::partition::partition_for_key;
use parley_sequencer::{follow, EventLog, Position};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// Push platforms this build can deliver to.
pub const PLATFORMS: &[&str] = &["webhook"];
/// Devices one user may register.
pub const MAX_DEVICES: usize = 20;

/// One device, as `GET /v1/devices` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Device {
    pub device_id: String,
    pub platform: String,
    /// The webhook URL (or platform token).
    pub url: String,
    pub registered_at: i64,
}

#[derive(Default)]
struct Book {
    devices: HashMap<String, BTreeMap<String, Device>>,
    muted: HashSet<(String, String)>,
    /// Large group → members who want every message pushed.
    opted_in: HashMap<String, HashSet<String>>,
    /// Users whose presence is hidden.
    hidden: HashSet<String>,
}

pub struct DeviceBook {
    /// Users whose presence visibility changed, as the book applies it.
    visibility: tokio::sync::broadcast::Sender<String>,
    log: Arc<dyn EventLog>,
    topic: String,
    partitions: i32,
    book: Arc<Mutex<Book>>,
    following: follow::Following,
}

impl DeviceBook {
    /// Follows `topic` until `shutdown`; returns once what it held at the call is read
    /// (or after `catch_up`, with a warning).
    pub async fn follow(
        log: Arc<dyn EventLog>,
        topic: &str,
        catch_up: Duration,
        shutdown: CancellationToken,
    ) -> parley_sequencer::Result<Arc<Self>> {
        let book = Arc::new(Mutex::new(Book::default()));
        let reader = book.clone();
        let (visibility, _) = tokio::sync::broadcast::channel(1024);
        let notify = visibility.clone();
        let following = follow::follow(log.clone(), topic, shutdown, move |r| {
            if let Some(user) = apply(&reader, r) {
                let _ = notify.send(user);
            }
        })
        .await?;
        let book = Arc::new(DeviceBook {
            visibility,
            log,
            topic: topic.to_string(),
            partitions: following.partitions(),
            book,
            following,
        });
        if !book.following.loaded(catch_up).await {
            warn!(
                topic,
                "devices not read to the end in time; serving what was read"
            );
        }
        Ok(book)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until every `(partition, offset)` is applied (the record at `offset` read).
    pub async fn wait_applied(&self, positions: &[(i32, i64)], timeout: Duration) -> bool {
        self.following.reached(positions, timeout).await
    }

    /// Waits until everything the topic holds now is applied: a setting written just
    /// before (by a gateway) is then known here.
    pub async fn catch_up(&self, timeout: Duration) -> bool {
        let Ok(ends) = self.log.end_offsets(&self.topic).await else {
            return false;
        };
        let ends: Vec<(i32, i64)> = ends
            .into_iter()
            .enumerate()
            .map(|(p, e)| (p as i32, e))
            .collect();
        self.wait_applied(&ends, timeout).await
    }

    /// Waits until the record at `pos` is applied, so a caller reads its own write.
    pub async fn wait_for(&self, pos: Position, timeout: Duration) -> bool {
        self.wait_applied(&[(pos.partition, pos.offset + 1)], timeout)
            .await
    }

    /// The devices of `user`, by id.
    pub fn devices(&self, user: &str) -> Vec<Device> {
        self.lock()
            .devices
            .get(user)
            .map(|d| d.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The members of (large group) `conversation` who want every message pushed.
    pub fn opted_in(&self, conversation: &str) -> Vec<String> {
        self.lock()
            .opted_in
            .get(conversation)
            .map(|u| u.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Opts `user` in (or out) of a push for every message of large group `conversation`.
    pub async fn opt_in(
        &self,
        user: &str,
        conversation: &str,
        opted_in: bool,
    ) -> parley_sequencer::Result<Position> {
        let record = PushOptedIn {
            meta: Meta::new(user),
            user_id: user.to_string(),
            conversation_id: conversation.to_string(),
            opted_in,
        };
        let value =
            encode(&record).map_err(|e| parley_sequencer::Error::Rejected(e.to_string()))?;
        self.append(user, &PushOptedIn::key(user, conversation), Some(&value))
            .await
    }

    /// Whether `user` hides their presence.
    pub fn presence_hidden(&self, user: &str) -> bool {
        self.lock().hidden.contains(user)
    }

    /// Users whose presence visibility the book has applied since the call (a lagged
    /// receiver has missed some).
    pub fn visibility_changes(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.visibility.subscribe()
    }

    /// Hides (or shows again) `user`'s presence.
    pub async fn set_presence_hidden(
        &self,
        user: &str,
        hidden: bool,
    ) -> parley_sequencer::Result<Position> {
        let record = PresenceVisibility {
            meta: Meta::new(user),
            user_id: user.to_string(),
            hidden,
        };
        let value =
            encode(&record).map_err(|e| parley_sequencer::Error::Rejected(e.to_string()))?;
        self.append(user, &PresenceVisibility::key(user), Some(&value))
            .await
    }

    pub fn is_muted(&self, user: &str, conversation: &str) -> bool {
        self.lock()
            .muted
            .contains(&(user.to_string(), conversation.to_string()))
    }

    async fn append(
        &self,
        user: &str,
        key: &str,
        value: Option<&[u8]>,
    ) -> parley_sequencer::Result<Position> {
        let partition = partition_for_key(user.as_bytes(), self.partitions.max(1));
        self.log
            .append_to(&self.topic, partition, key.as_bytes(), value)
            .await
    }

    /// Registers (or replaces) a device of `user`.
    pub async fn register(
        &self,
        user: &str,
        device_id: &str,
        platform: &str,
        target: &str,
    ) -> parley_sequencer::Result<Position> {
        let record = DeviceRegistered {
            meta: Meta::new(user),
            user_id: user.to_string(),
            device_id: device_id.to_string(),
            platform: platform.to_string(),
            target: target.to_string(),
        };
        let value =
            encode(&record).map_err(|e| parley_sequencer::Error::Rejected(e.to_string()))?;
        self.append(user, &DeviceRegistered::key(user, device_id), Some(&value))
            .await
    }

    /// Removes a device of `user`.
    pub async fn remove(&self, user: &str, device_id: &str) -> parley_sequencer::Result<Position> {
        self.append(user, &DeviceRegistered::key(user, device_id), None)
            .await
    }

    /// Mutes (or unmutes) `conversation` for `user`'s push notifications.
    pub async fn mute(
        &self,
        user: &str,
        conversation: &str,
        muted: bool,
    ) -> parley_sequencer::Result<Position> {
        let record = ConversationMuted {
            meta: Meta::new(user),
            user_id: user.to_string(),
            conversation_id: conversation.to_string(),
            muted,
        };
        let value =
            encode(&record).map_err(|e| parley_sequencer::Error::Rejected(e.to_string()))?;
        self.append(
            user,
            &ConversationMuted::key(user, conversation),
            Some(&value),
        )
        .await
    }
}

/// Applies one record of the topic to `book`; the user whose presence visibility it
/// set, if it is such a record.
fn apply(book: &Mutex<Book>, r: &parley_sequencer::LogRecord) -> Option<String> {
    let key = r.key.as_deref().and_then(|k| std::str::from_utf8(k).ok());
    let at = r.timestamp_ms.unwrap_or(0);
    {
        let mut book = book.lock().unwrap_or_else(|p| p.into_inner());
        match (&r.value, key) {
            (None, Some(key)) => {
                // A tombstone: only devices are deleted this way.
                if let Some((user, id)) = key.split_once("/device/") {
                    if let Some(devices) = book.devices.get_mut(user) {
                        devices.remove(id);
                        if devices.is_empty() {
                            book.devices.remove(user);
                        }
                    }
                }
            }
            (Some(v), _) => match decode_any(v) {
                Ok(AnyRecord::DeviceRegistered(d)) => {
                    book.devices.entry(d.user_id).or_default().insert(
                        d.device_id.clone(),
                        Device {
                            device_id: d.device_id,
                            platform: d.platform,
                            url: d.target,
                            registered_at: at,
                        },
                    );
                }
                Ok(AnyRecord::ConversationMuted(m)) => {
                    let k = (m.user_id, m.conversation_id);
                    if m.muted {
                        book.muted.insert(k);
                    } else {
                        book.muted.remove(&k);
                    }
                }
                Ok(AnyRecord::PresenceVisibility(v)) => {
                    if v.hidden {
                        book.hidden.insert(v.user_id.clone());
                    } else {
                        book.hidden.remove(&v.user_id);
                    }
                    return Some(v.user_id);
                }
                Ok(AnyRecord::PushOptedIn(o)) => {
                    if o.opted_in {
                        book.opted_in
                            .entry(o.conversation_id)
                            .or_default()
                            .insert(o.user_id);
                    } else if let Some(users) = book.opted_in.get_mut(&o.conversation_id) {
                        users.remove(&o.user_id);
                        if users.is_empty() {
                            book.opted_in.remove(&o.conversation_id);
                        }
                    }
                }
                Ok(other) => warn!(schema = other.schema_name(), "not a push setting; skipped"),
                Err(e) => {
                    warn!(offset = r.offset, error = %e, "undecodable push setting skipped")
                }
            },
            (None, None) => {}
        }
    }
    None
}
