//! Presence people see: `presence` frames about a user's contacts, and the answers to
//! `presence_query` and `GET /v1/presence`. Who may see whom is the consent model of
//! docs/ARCHITECTURE.md ("Who may see what"):
//!
//! - V's presence is shown to U only while both are members of
//!   - a direct conversation in which V has written since they became a member (V's
//!     answer is V's consent: creating a direct conversation with someone shows you
//!     nothing of them until they write back), or
//!   - a group of at most `presence_group_limit` members;
//! - and never while V hides their presence (`PUT /v1/me/presence`): then nobody is told
//!   whether V is online, nor when V was last seen.
//!
//! How it is kept, for the users with a session here ([`grants::Grants`]):
//! - When a user's first session opens, their contacts are loaded from the views (the
//!   conversations they are in, at most [`MAX_CONVERSATIONS`]). They get one `presence`
//!   frame per contact, then a frame whenever a contact's state changes.
//! - It then follows the log, with no reload: a leave or removal, routed to every
//!   gateway in log order, takes effect at its position (each side loses the other
//!   through that conversation, and is sent an offline frame if that was the last one);
//!   a join looks up that one conversation; a message in a direct conversation grants
//!   its sender to the recipient; a message of a conversation not looked at yet looks
//!   up that one conversation.
//! - Changes of state come from the [`PresenceStore`]'s notices. Every `presence_every`
//!   the noticed users who have watchers here are looked up in one batch, and a frame
//!   goes out only if the state shown differs from the last one sent: a user who flaps
//!   costs at most one frame per interval.
//! - A query answers by the same rule; anyone else is `unknown`, never online.

pub mod grants;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use parley_presence::{PresenceStore, Seen};
use parley_projector::views::ConversationView;
use parley_projector::Views;
use parley_push::DeviceBook;
use parley_schemas::frames::{PresenceStatus, PresenceView, ServerFrame};
use parley_schemas::ConversationKind;
use parley_sequencer::partition::partition_for_key;
use parley_sequencer::EventLog;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::error::ApiError;
use crate::groups::Change;
use crate::sessions::Sessions;
use crate::ws::encode;
use grants::{Delta, Grants};

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
/// Leaves remembered for loads that run meanwhile.
const LEAVES_KEPT: usize = 10_000;
/// Times a one-conversation lookup is tried again when a change of that conversation
/// arrives while it runs.
const LEARN_TRIES: usize = 3;

/// What a hidden (or no longer shown) user looks like: offline, never seen.
const NOTHING: Seen = Seen {
    online: false,
    last_seen: None,
};

#[derive(Default)]
struct Inner {
    grants: Grants,
    /// Contact → the state last sent about them.
    sent: HashMap<String, Seen>,
    /// Contacts noticed since the last flush.
    pending: HashSet<String>,
    /// The latest leaves, numbered: a load that ran meanwhile applies those after its
    /// start.
    leaves: VecDeque<(u64, String, String)>,
    leave_seq: u64,
    /// Membership changes seen per conversation: a one-conversation lookup that saw
    /// this move while it ran is done again.
    changes: HashMap<String, u64>,
}

pub struct Contacts {
    store: Arc<dyn PresenceStore>,
    views: Arc<dyn Views>,
    log: Arc<dyn EventLog>,
    events: String,
    events_partitions: i32,
    sessions: Arc<Sessions>,
    devices: Arc<DeviceBook>,
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

/// Whom `user` is shown through `view` (a conversation they are a member of).
pub fn granted_by(view: &ConversationView, user: &str, group_limit: usize) -> HashSet<String> {
    if !view.members.iter().any(|m| m == user) {
        return HashSet::new();
    }
    match view.kind {
        ConversationKind::Direct => view
            .wrote
            .iter()
            .filter(|w| *w != user && view.members.contains(w))
            .cloned()
            .collect(),
        ConversationKind::Group if view.members.len() <= group_limit => view
            .members
            .iter()
            .filter(|m| *m != user)
            .cloned()
            .collect(),
        ConversationKind::Group => HashSet::new(),
    }
}

/// Contacts as loaded from the views: contact → conversations, and the conversations
/// looked at.
type Loaded = (
    HashMap<String, HashSet<String>>,
    HashMap<String, ConversationKind>,
);

impl Contacts {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn PresenceStore>,
        views: Arc<dyn Views>,
        log: Arc<dyn EventLog>,
        events: &str,
        events_partitions: i32,
        sessions: Arc<Sessions>,
        devices: Arc<DeviceBook>,
        group_limit: usize,
    ) -> Self {
        Contacts {
            store,
            views,
            log,
            events: events.to_string(),
            events_partitions: events_partitions.max(1),
            sessions,
            devices,
            group_limit,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What `user` is shown of `contact` now: nothing while the contact hides.
    fn shown(&self, contact: &str, seen: Seen) -> Seen {
        if self.devices.presence_hidden(contact) {
            NOTHING
        } else {
            seen
        }
    }

    /// Waits until the views hold what the log holds now in `partitions` (all when
    /// None); false if they did not get there in time.
    async fn caught_up(&self, partitions: Option<&[i32]>) -> Result<bool, ApiError> {
        let ends = self.log.end_offsets(&self.events).await?;
        let offsets: Vec<(i32, i64)> = ends
            .into_iter()
            .enumerate()
            .map(|(p, e)| (p as i32, e))
            .filter(|(p, _)| partitions.is_none_or(|ps| ps.contains(p)))
            .collect();
        Ok(self.views.wait_applied(&offsets, LOAD_WAIT).await?)
    }

    /// `user`'s contacts from the views, once they hold what the log held: a
    /// conversation created just before counts.
    async fn load(&self, user: &str) -> Result<Loaded, ApiError> {
        if !self.caught_up(None).await? {
            debug!(user = %user, "views behind the log: contacts loaded from what they hold");
        }
        let mut list = self.views.user_conversations(user, false).await?;
        list.sort_by_key(|c| std::cmp::Reverse(c.last_seq));
        let mut known = HashMap::new();
        let mut contacts: HashMap<String, HashSet<String>> = HashMap::new();
        for c in list.iter().take(MAX_CONVERSATIONS) {
            known.insert(c.conversation_id.clone(), c.kind);
            let small = c.kind == ConversationKind::Direct || c.members <= self.group_limit;
            if !small || contacts.len() >= MAX_CONTACTS {
                continue;
            }
            if let Some(view) = self.views.conversation(&c.conversation_id).await? {
                for contact in granted_by(&view, user, self.group_limit) {
                    contacts
                        .entry(contact)
                        .or_default()
                        .insert(c.conversation_id.clone());
                }
            }
        }
        Ok((contacts, known))
    }

    /// A session of `user` opened: (once per user here) their contacts are watched and
    /// the session gets each contact's state.
    pub async fn attach(&self, user: &str) {
        let start = self.lock().leave_seq;
        let (mut contacts, known) = match self.load(user).await {
            Ok(c) => c,
            Err(e) => {
                warn!(user = %user, error = %e, "contacts not loaded: no presence frames for this session");
                return;
            }
        };
        if !self.sessions.has_user(user) {
            return; // gone while loading
        }
        let delta = {
            let mut inner = self.lock();
            // Leaves this gateway applied while the load ran: the views may not have
            // had them.
            let missed = inner.leaves.front().is_some_and(|(n, _, _)| *n > start + 1);
            if missed {
                debug!(user = %user, "more leaves than kept during the load: loading again");
            }
            for (_, conv, member) in inner.leaves.iter().filter(|(n, _, _)| *n > start) {
                if member == user {
                    for convs in contacts.values_mut() {
                        convs.remove(conv);
                    }
                } else if let Some(convs) = contacts.get_mut(member) {
                    convs.remove(conv);
                }
            }
            contacts.retain(|_, convs| !convs.is_empty());
            if missed {
                None
            } else {
                Some(inner.grants.install(user, contacts, known))
            }
        };
        match delta {
            Some(d) => self.announce(&d).await,
            None => Box::pin(self.attach(user)).await,
        }
    }

    /// `user`'s last session here closed: their contacts are no longer watched for them.
    pub fn detach(&self, user: &str) {
        if self.sessions.has_user(user) {
            return;
        }
        let mut inner = self.lock();
        inner.grants.drop_user(user);
        let Inner { grants, sent, .. } = &mut *inner;
        sent.retain(|c, _| grants.is_watched(c));
    }

    /// A message of `conversation` from `sender` was delivered to `user` here.
    pub fn on_message(self: &Arc<Self>, user: &str, conversation: &str, sender: &str) {
        let direct_grant = {
            let mut inner = self.lock();
            if !inner.grants.is_loaded(user) {
                return;
            }
            match inner.grants.known(user, conversation) {
                // Writing in a direct conversation shows the writer to the other.
                Some(ConversationKind::Direct) if sender != user => {
                    if inner.grants.shows(user, sender) {
                        return;
                    }
                    let writer = HashSet::from([sender.to_string()]);
                    Some(inner.grants.set_via(
                        user,
                        conversation,
                        ConversationKind::Direct,
                        &writer,
                    ))
                }
                Some(_) => return,
                None => None,
            }
        };
        let me = self.clone();
        let (user, conversation, sender) = (
            user.to_string(),
            conversation.to_string(),
            sender.to_string(),
        );
        match direct_grant {
            Some(delta) => {
                tokio::spawn(async move { me.announce(&delta).await });
            }
            None => {
                // A conversation new to the user: that one is looked up.
                tokio::spawn(async move {
                    me.learn(&conversation, &[user], Some(&sender)).await;
                });
            }
        }
    }

    /// A membership change of any conversation, routed to every gateway in log order:
    /// it takes effect here at its position.
    pub fn on_change(self: &Arc<Self>, change: &Change) {
        match change {
            Change::Leave { conversation, user } => {
                let deltas = {
                    let mut inner = self.lock();
                    *inner.changes.entry(conversation.clone()).or_default() += 1;
                    inner.leave_seq += 1;
                    let n = inner.leave_seq;
                    inner
                        .leaves
                        .push_back((n, conversation.clone(), user.clone()));
                    if inner.leaves.len() > LEAVES_KEPT {
                        inner.leaves.pop_front();
                    }
                    inner.grants.leave(conversation, user)
                };
                if !deltas.is_empty() {
                    let me = self.clone();
                    tokio::spawn(async move {
                        for d in deltas {
                            me.announce(&d).await;
                        }
                    });
                }
            }
            Change::Join {
                conversation,
                users,
            } => {
                let affected: Vec<String> = {
                    let mut inner = self.lock();
                    *inner.changes.entry(conversation.clone()).or_default() += 1;
                    let mut affected = inner.grants.users_of(conversation);
                    affected.extend(users.iter().filter(|u| inner.grants.is_loaded(u)).cloned());
                    affected.sort();
                    affected.dedup();
                    affected
                };
                if !affected.is_empty() {
                    let (me, conversation) = (self.clone(), conversation.clone());
                    tokio::spawn(async move { me.learn(&conversation, &affected, None).await });
                }
            }
        }
        let mut inner = self.lock();
        if inner.changes.len() > 100_000 {
            inner.changes.clear();
        }
    }

    /// Looks up `conversation` once the views hold the log's end of its partition, and
    /// sets what it grants each of `users` (loaded here). A message of it from `wrote`
    /// was just delivered: the writer counts as having written even if the views lag.
    async fn learn(&self, conversation: &str, users: &[String], wrote: Option<&str>) {
        let p = partition_for_key(conversation.as_bytes(), self.events_partitions);
        for _ in 0..LEARN_TRIES {
            let seen = self.lock().changes.get(conversation).copied();
            if let Err(e) = self.caught_up(Some(&[p])).await {
                debug!(conversation = %conversation, error = %e, "views not reached for contacts");
            }
            let view = match self.views.conversation(conversation).await {
                Ok(v) => v,
                Err(e) => {
                    warn!(conversation = %conversation, error = %e, "contacts of a conversation not looked up");
                    return;
                }
            };
            let deltas: Vec<Delta> = {
                let mut inner = self.lock();
                if inner.changes.get(conversation).copied() != seen {
                    continue; // a change came meanwhile: look again
                }
                let Some(mut view) = view else { return };
                if let Some(w) = wrote {
                    if view.kind == ConversationKind::Direct && !view.wrote.iter().any(|x| x == w) {
                        view.wrote.push(w.to_string());
                    }
                }
                users
                    .iter()
                    .map(|u| {
                        let granted = granted_by(&view, u, self.group_limit);
                        inner.grants.set_via(u, conversation, view.kind, &granted)
                    })
                    .filter(|d| !d.is_empty())
                    .collect()
            };
            for d in deltas {
                self.announce(&d).await;
            }
            return;
        }
        debug!(conversation = %conversation, "contacts lookup kept racing changes; the next one settles it");
    }

    /// Sends `d.user`'s sessions the state of each contact added, and an offline frame
    /// (no last seen) about each one removed.
    async fn announce(&self, d: &Delta) {
        let sessions = self.sessions.of(&d.user);
        if sessions.is_empty() {
            return;
        }
        for gone in &d.removed {
            let frame = encode(&frame_of(gone, NOTHING));
            for s in &sessions {
                s.push_bulk(frame.clone()).await;
            }
        }
        for batch in d.added.chunks(LOOKUP_BATCH) {
            let seen = match self.store.lookup(batch).await {
                Ok(s) => s,
                Err(e) => {
                    warn!(user = %d.user, error = %e, "presence store unavailable");
                    return;
                }
            };
            for (contact, s) in batch.iter().zip(seen) {
                let s = self.shown(contact, s);
                self.lock().sent.entry(contact.clone()).or_insert(s);
                let frame = encode(&frame_of(contact, s));
                for session in &sessions {
                    session.push_bulk(frame.clone()).await;
                }
            }
        }
    }

    /// Hears the store's notices and visibility changes until `shutdown`; every
    /// `every`, sends what changed.
    pub async fn run(self: Arc<Self>, every: Duration, shutdown: CancellationToken) {
        let mut changes = self.store.changes();
        let mut visibility = self.devices.visibility_changes();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                notice = changes.recv() => self.noticed(notice),
                notice = visibility.recv() => self.noticed(notice),
                _ = tick.tick() => self.flush().await,
            }
        }
    }

    fn noticed(&self, notice: Result<String, RecvError>) {
        let mut inner = self.lock();
        match notice {
            Ok(user) => {
                if inner.grants.is_watched(&user) {
                    inner.pending.insert(user);
                }
            }
            Err(RecvError::Lagged(n)) => {
                debug!(
                    missed = n,
                    "presence notices missed: every watched user is looked up"
                );
                let all = inner.grants.watched();
                inner.pending.extend(all);
            }
            Err(RecvError::Closed) => {}
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
                let s = self.shown(contact, s);
                let watchers: Vec<String> = {
                    let mut inner = self.lock();
                    if inner.sent.get(contact) == Some(&s) {
                        continue;
                    }
                    inner.sent.insert(contact.clone(), s);
                    inner.grants.watchers(contact)
                };
                let frame = encode(&frame_of(contact, s));
                for w in watchers {
                    self.sessions.deliver(&w, &frame, None);
                }
            }
        }
    }

    /// The users of `users` whom `caller` is shown: from the index when the caller has
    /// a session here, else from the views (their conversations, at most
    /// [`MAX_CONVERSATIONS`]).
    async fn shown_to(&self, caller: &str, users: &[String]) -> Result<HashSet<String>, ApiError> {
        let loaded = {
            let inner = self.lock();
            inner.grants.is_loaded(caller).then(|| {
                users
                    .iter()
                    .filter(|u| *u == caller || inner.grants.shows(caller, u))
                    .cloned()
                    .collect::<HashSet<String>>()
            })
        };
        if let Some(shown) = loaded {
            return Ok(shown);
        }
        let (contacts, _) = self.load(caller).await?;
        Ok(users
            .iter()
            .filter(|u| *u == caller || contacts.contains_key(*u))
            .cloned()
            .collect())
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
        let allowed: Vec<String> = self
            .shown_to(caller, users)
            .await?
            .into_iter()
            .filter(|u| u == caller || !self.devices.presence_hidden(u))
            .collect();
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
