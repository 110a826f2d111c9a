//! Presence people see: `presence` frames about a user's contacts, and the answers to
//! `presence_query` and `GET /v1/presence`.
//!
//! - When a user's first session opens here, their contacts are loaded from the views:
//!   the other members of their direct conversations and of their groups of at most
//!   `presence_group_limit` members. The user then gets one `presence` frame per
//!   contact, and from then on a frame whenever a contact's state changes.
//! - Changes come from the [`PresenceStore`]'s notices. Every `presence_every` the
//!   noticed users who have watchers here are looked up in one batch, and a frame goes
//!   out only if the state differs from the last one sent: a user who flaps costs at
//!   most one frame per interval.
//! - A query answers only for users who share a conversation with the caller (any
//!   size); anyone else is `unknown`, never online.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use parley_presence::{PresenceStore, Seen};
use parley_projector::Views;
use parley_schemas::frames::{PresenceStatus, PresenceView, ServerFrame};
use parley_schemas::ConversationKind;
use parley_sequencer::EventLog;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::error::ApiError;
use crate::sessions::Sessions;
use crate::ws::encode;

/// Conversations looked at per user, at most (the most recent first).
const MAX_CONVERSATIONS: usize = 500;
/// Contacts watched per user, at most.
const MAX_CONTACTS: usize = 5_000;
/// Users one query may ask about.
pub const MAX_QUERY: usize = 100;
/// Users looked up in one store call.
const LOOKUP_BATCH: usize = 500;
/// How long loading contacts waits for the views to reach the log's end.
const LOAD_WAIT: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Inner {
    /// Local user → the contacts they watch.
    of: HashMap<String, HashSet<String>>,
    /// Local user → the conversations their contacts were loaded from (a message of
    /// another one loads them again).
    convs: HashMap<String, HashSet<String>>,
    /// Contact → the local users watching them.
    watchers: HashMap<String, HashSet<String>>,
    /// Contact → the state last sent about them.
    sent: HashMap<String, Seen>,
    /// Contacts noticed since the last flush.
    pending: HashSet<String>,
}

pub struct Contacts {
    store: Arc<dyn PresenceStore>,
    views: Arc<dyn Views>,
    log: Arc<dyn EventLog>,
    events: String,
    sessions: Arc<Sessions>,
    group_limit: usize,
    inner: Mutex<Inner>,
}

fn frame_of(user: &str, seen: Seen) -> ServerFrame {
    ServerFrame::Presence {
        user_id: user.to_string(),
        online: seen.online,
        last_seen: seen.last_seen,
    }
}

impl Contacts {
    pub fn new(
        store: Arc<dyn PresenceStore>,
        views: Arc<dyn Views>,
        log: Arc<dyn EventLog>,
        events: &str,
        sessions: Arc<Sessions>,
        group_limit: usize,
    ) -> Self {
        Contacts {
            store,
            views,
            log,
            events: events.to_string(),
            sessions,
            group_limit,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The users whose presence `user` is sent (co-members of direct conversations and
    /// of groups up to the limit), and the conversations looked at. Read once the views
    /// hold what the log held: a conversation created just before counts.
    async fn load(&self, user: &str) -> Result<(HashSet<String>, HashSet<String>), ApiError> {
        // The log reads the end offsets once for every session opening meanwhile.
        let ends: Vec<(i32, i64)> = self
            .log
            .end_offsets(&self.events)
            .await?
            .into_iter()
            .enumerate()
            .map(|(p, e)| (p as i32, e))
            .collect();
        if !self.views.wait_applied(&ends, LOAD_WAIT).await? {
            debug!(user = %user, "views behind the log: contacts loaded from what they hold");
        }
        let mut list = self.views.user_conversations(user, false).await?;
        list.sort_by_key(|c| std::cmp::Reverse(c.last_seq));
        let convs: HashSet<String> = list.iter().map(|c| c.conversation_id.clone()).collect();
        let mut contacts = HashSet::new();
        for c in list.iter().take(MAX_CONVERSATIONS) {
            let small = c.kind == ConversationKind::Direct || c.members <= self.group_limit;
            if !small {
                continue;
            }
            if let Some(view) = self.views.conversation(&c.conversation_id).await? {
                contacts.extend(view.members.into_iter().filter(|m| m != user));
            }
            if contacts.len() >= MAX_CONTACTS {
                break;
            }
        }
        Ok((contacts, convs))
    }

    /// A message of `conversation` was delivered to `user` here: if their contacts were
    /// loaded without it (it is new), they are loaded again.
    pub fn on_message(self: &Arc<Self>, user: &str, conversation: &str) {
        {
            let mut inner = self.lock();
            let Some(known) = inner.convs.get_mut(user) else {
                return;
            };
            if !known.insert(conversation.to_string()) {
                return;
            }
        }
        let (me, user) = (self.clone(), user.to_string());
        tokio::spawn(async move { me.attach(&user).await });
    }

    /// A session of `user` opened: (once per user here) their contacts are watched and
    /// the session gets each contact's state.
    pub async fn attach(&self, user: &str) {
        let (contacts, convs) = match self.load(user).await {
            Ok(c) => c,
            Err(e) => {
                warn!(user = %user, error = %e, "contacts not loaded: no presence frames for this session");
                return;
            }
        };
        if !self.sessions.has_user(user) {
            return; // gone while loading
        }
        {
            let mut inner = self.lock();
            inner
                .convs
                .entry(user.to_string())
                .or_default()
                .extend(convs);
            let old = inner.of.insert(user.to_string(), contacts.clone());
            for c in old.unwrap_or_default().difference(&contacts) {
                forget_watcher(&mut inner, c, user);
            }
            for c in &contacts {
                inner
                    .watchers
                    .entry(c.clone())
                    .or_default()
                    .insert(user.to_string());
            }
        }
        let contacts: Vec<String> = contacts.into_iter().collect();
        for batch in contacts.chunks(LOOKUP_BATCH) {
            let seen = match self.store.lookup(batch).await {
                Ok(s) => s,
                Err(e) => {
                    warn!(user = %user, error = %e, "presence store unavailable");
                    return;
                }
            };
            let sessions = self.sessions.of(user);
            for (contact, s) in batch.iter().zip(seen) {
                self.lock().sent.entry(contact.clone()).or_insert(s);
                let frame = encode(&frame_of(contact, s));
                for session in &sessions {
                    session.push_bulk(frame.clone()).await;
                }
            }
        }
    }

    /// `user`'s last session here closed: their contacts are no longer watched for them.
    pub fn detach(&self, user: &str) {
        if self.sessions.has_user(user) {
            return;
        }
        let mut inner = self.lock();
        inner.convs.remove(user);
        for c in inner.of.remove(user).unwrap_or_default() {
            forget_watcher(&mut inner, &c, user);
        }
    }

    /// Hears the store's notices until `shutdown`; every `every`, sends what changed.
    pub async fn run(self: Arc<Self>, every: Duration, shutdown: CancellationToken) {
        let mut changes = self.store.changes();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                notice = changes.recv() => match notice {
                    Ok(user) => {
                        let mut inner = self.lock();
                        if inner.watchers.contains_key(&user) {
                            inner.pending.insert(user);
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        debug!(missed = n, "presence notices missed: every watched user is looked up");
                        let mut inner = self.lock();
                        let all: Vec<String> = inner.watchers.keys().cloned().collect();
                        inner.pending.extend(all);
                    }
                    Err(RecvError::Closed) => return,
                },
                _ = tick.tick() => self.flush().await,
            }
        }
    }

    async fn flush(&self) {
        let pending: Vec<String> = std::mem::take(&mut self.lock().pending)
            .into_iter()
            .collect();
        for batch in pending.chunks(LOOKUP_BATCH) {
            let seen = match self.store.lookup(batch).await {
                Ok(s) => s,
                Err(e) => {
                    warn!(error = %e, "presence store unavailable; changes sent later");
                    self.lock().pending.extend(batch.iter().cloned());
                    return;
                }
            };
            for (contact, s) in batch.iter().zip(seen) {
                let watchers: Vec<String> = {
                    let mut inner = self.lock();
                    if inner.sent.get(contact) == Some(&s) {
                        continue;
                    }
                    inner.sent.insert(contact.clone(), s);
                    inner
                        .watchers
                        .get(contact)
                        .map(|w| w.iter().cloned().collect())
                        .unwrap_or_default()
                };
                let frame = encode(&frame_of(contact, s));
                for w in watchers {
                    self.sessions.deliver(&w, &frame, None);
                }
            }
        }
    }

    /// Whether `caller` shares a conversation with `other`.
    async fn shares(
        &self,
        caller: &str,
        mine: &HashSet<String>,
        other: &str,
    ) -> Result<bool, ApiError> {
        if caller == other
            || self
                .lock()
                .of
                .get(caller)
                .is_some_and(|c| c.contains(other))
        {
            return Ok(true);
        }
        let theirs = self.views.user_conversations(other, false).await?;
        Ok(theirs.iter().any(|c| mine.contains(&c.conversation_id)))
    }

    /// The presence of `users` as `caller` may know it.
    pub async fn query(
        &self,
        caller: &str,
        users: &[String],
    ) -> Result<Vec<PresenceView>, ApiError> {
        if users.len() > MAX_QUERY {
            return Err(ApiError::bad_request(format!(
                "at most {MAX_QUERY} user ids per query"
            )));
        }
        if let Some(bad) = users.iter().find(|u| !crate::auth::valid_user_id(u)) {
            return Err(ApiError::bad_request(format!(
                "{bad:?} is not a valid user id"
            )));
        }
        let mine: HashSet<String> = self
            .views
            .user_conversations(caller, false)
            .await?
            .into_iter()
            .map(|c| c.conversation_id)
            .collect();
        let mut allowed = Vec::new();
        for u in users {
            if self.shares(caller, &mine, u).await? {
                allowed.push(u.clone());
            }
        }
        let seen = self
            .store
            .lookup(&allowed)
            .await
            .map_err(|e| ApiError::unavailable(format!("presence store: {e}")))?;
        let known: HashMap<&String, Seen> = allowed.iter().zip(seen).collect();
        Ok(users
            .iter()
            .map(|u| match known.get(u) {
                Some(s) => PresenceView {
                    user_id: u.clone(),
                    status: if s.online {
                        PresenceStatus::Online
                    } else {
                        PresenceStatus::Offline
                    },
                    last_seen: s.last_seen,
                },
                None => PresenceView {
                    user_id: u.clone(),
                    status: PresenceStatus::Unknown,
                    last_seen: None,
                },
            })
            .collect())
    }
}

fn forget_watcher(inner: &mut Inner, contact: &str, user: &str) {
    if let Some(w) = inner.watchers.get_mut(contact) {
        w.remove(user);
        if w.is_empty() {
            inner.watchers.remove(contact);
            inner.sent.remove(contact);
        }
    }
}
