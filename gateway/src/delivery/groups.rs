//! This gateway's index of group membership, for the broadcast path of large groups:
//! conversation → the users connected here who are members.
//!
//! A message of a large group reaches every gateway slot with anyone online, without a recipient list
//! (`DeliveryBatch.broadcast`); the gateway hands it to its own sessions of the group's
//! members, found here. The index holds every group of every user with a session here:
//! - it is loaded from the views when a user's first session opens (before the session
//!   is `ready`, so the client's sync covers everything routed before the load);
//! - it follows the log from then on: the fanout-workers route each change of a group's
//!   membership (created, members added, a member removed) to every slot, in order with
//!   the group's messages, so a change takes effect here at its log position.
//!
//! The load must not miss a change this gateway has already applied: it first waits
//! until the views have applied every membership record routed here so far. Changes
//! that arrive while it runs are kept and applied, in order, on top of it. The index
//! then changes for the user exactly where the log does, with one allowance: a load
//! that is ahead of this gateway's stream may hold an add a few records early (the
//! removals it holds early only withhold live copies that the client's sync brings).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use parley_schemas::{AnyRecord, ConversationKind};
use tokio::sync::watch;

/// How long a second session of a user waits for the first one's load.
const LOAD_WAIT: Duration = Duration::from_secs(15);
/// The longest a load may take (shorter than [`LOAD_WAIT`]).
const LOAD_DEADLINE: Duration = Duration::from_secs(12);

/// A change of a group's membership, as the log decided it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Join {
        conversation: String,
        users: Vec<String>,
    },
    Leave {
        conversation: String,
        user: String,
    },
}

impl Change {
    /// The change a routed membership record makes (the router routes only records the
    /// rules applied).
    pub fn of(record: &AnyRecord) -> Option<Change> {
        match record {
            AnyRecord::ConversationCreated(c) if c.kind == ConversationKind::Group => {
                Some(Change::Join {
                    conversation: c.conversation_id.clone(),
                    users: c.members.clone(),
                })
            }
            AnyRecord::MembersAdded(a) => Some(Change::Join {
                conversation: a.conversation_id.clone(),
                users: a.members.clone(),
            }),
            AnyRecord::MemberRemoved(r) => Some(Change::Leave {
                conversation: r.conversation_id.clone(),
                user: r.member.clone(),
            }),
            _ => None,
        }
    }
}

/// Why a user's groups could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("the user's groups could not be loaded: {0}")]
pub struct LoadError(pub String);

/// Where a user's load stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Load {
    Loading,
    Ready,
    /// The load failed or was abandoned: the next session loads again.
    Failed,
}

struct Entry {
    sessions: usize,
    groups: HashSet<String>,
    /// Some while the groups are being loaded: the changes seen meanwhile, in order.
    pending: Option<Vec<Change>>,
    state: watch::Sender<Load>,
    /// Which load is current (a failed one may be taken over by a later session).
    generation: u64,
}

/// A session's place in the index: dropping it (the session ended, or its task was
/// cancelled) takes it out.
pub struct Attachment {
    index: Arc<GroupIndex>,
    user: String,
}

impl Drop for Attachment {
    fn drop(&mut self) {
        self.index.detach(&self.user);
    }
}

/// Undoes a session's count if `attach` does not finish (an error, or its future dropped).
struct Counted<'a> {
    index: &'a GroupIndex,
    user: &'a str,
    /// The generation this session loads, if it is the loader.
    loading: Option<u64>,
    armed: bool,
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut inner = self.index.lock();
        if let (Some(generation), Some(e)) = (self.loading, inner.users.get_mut(self.user)) {
            if e.generation == generation && e.pending.is_some() {
                e.state.send_replace(Load::Failed);
            }
        }
        inner.detach(self.user);
    }
}

#[derive(Default)]
struct Inner {
    by_group: HashMap<String, HashSet<String>>,
    users: HashMap<String, Entry>,
    /// Per partition of `events`, the next offset after the last membership record
    /// applied here.
    seen: HashMap<i32, i64>,
    /// Per group, the offset of the last membership record applied here: an older one
    /// arriving later (a retried append that landed late, a new owner routing again
    /// what its predecessor had) changes nothing.
    last: HashMap<String, i64>,
    generations: u64,
}

impl Inner {
    fn join(&mut self, group: &str, user: &str) {
        if let Some(e) = self.users.get_mut(user) {
            e.groups.insert(group.to_string());
            self.by_group
                .entry(group.to_string())
                .or_default()
                .insert(user.to_string());
        }
    }

    fn leave(&mut self, group: &str, user: &str) {
        if let Some(e) = self.users.get_mut(user) {
            e.groups.remove(group);
        }
        if let Some(set) = self.by_group.get_mut(group) {
            set.remove(user);
            if set.is_empty() {
                self.by_group.remove(group);
            }
        }
    }

    fn detach(&mut self, user: &str) {
        let Some(e) = self.users.get_mut(user) else {
            return;
        };
        e.sessions = e.sessions.saturating_sub(1);
        if e.sessions > 0 {
            return;
        }
        let groups: Vec<String> = e.groups.drain().collect();
        for g in groups {
            self.leave(&g, user);
        }
        self.users.remove(user);
    }

    /// Applies `change` for `user` now, or keeps it for after the user's load.
    fn apply_for(&mut self, user: &str, change: &Change) {
        let Some(e) = self.users.get_mut(user) else {
            return;
        };
        if let Some(pending) = e.pending.as_mut() {
            let one = match change {
                Change::Join { conversation, .. } => Change::Join {
                    conversation: conversation.clone(),
                    users: vec![user.to_string()],
                },
                leave => leave.clone(),
            };
            pending.push(one);
            return;
        }
        match change {
            Change::Join { conversation, .. } => self.join(conversation, user),
            Change::Leave { conversation, .. } => self.leave(conversation, user),
        }
    }
}

#[derive(Default)]
pub struct GroupIndex {
    inner: Mutex<Inner>,
}

impl GroupIndex {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a new session of `user`; the first one loads the user's groups with
    /// `load`, which must reflect the log at least up to the offsets it is given (those
    /// of the membership records applied here so far); later ones wait for that load. On
    /// an error, or if this future is dropped, the session is not counted; otherwise it
    /// counts until the [`Attachment`] is dropped.
    pub async fn attach<F, Fut>(
        self: &Arc<Self>,
        user: &str,
        load: F,
    ) -> Result<Attachment, LoadError>
    where
        F: FnOnce(Vec<(i32, i64)>) -> Fut,
        Fut: Future<Output = Result<Vec<String>, LoadError>>,
    {
        let (waiting, loading, seen) = {
            let mut inner = self.lock();
            let seen: Vec<(i32, i64)> = inner.seen.iter().map(|(p, o)| (*p, *o)).collect();
            inner.generations += 1;
            let generation = inner.generations;
            match inner.users.get_mut(user) {
                Some(e) if *e.state.borrow() != Load::Failed => {
                    e.sessions += 1;
                    (Some(e.state.subscribe()), None, seen)
                }
                Some(e) => {
                    // An earlier load failed: this session loads again.
                    e.sessions += 1;
                    e.generation = generation;
                    e.pending = Some(Vec::new());
                    e.state.send_replace(Load::Loading);
                    (None, Some(generation), seen)
                }
                None => {
                    inner.users.insert(
                        user.to_string(),
                        Entry {
                            sessions: 1,
                            groups: HashSet::new(),
                            pending: Some(Vec::new()),
                            state: watch::channel(Load::Loading).0,
                            generation,
                        },
                    );
                    (None, Some(generation), seen)
                }
            }
        };
        let mut counted = Counted {
            index: self,
            user,
            loading,
            armed: true,
        };
        let attachment = || Attachment {
            index: self.clone(),
            user: user.to_string(),
        };
        if let Some(mut rx) = waiting {
            let state = tokio::time::timeout(LOAD_WAIT, rx.wait_for(|l| *l != Load::Loading))
                .await
                .map(|r| r.map(|l| *l));
            return match state {
                Ok(Ok(Load::Ready)) => {
                    counted.armed = false;
                    Ok(attachment())
                }
                _ => Err(LoadError("another session's load did not finish".into())),
            };
        }
        let groups = match tokio::time::timeout(LOAD_DEADLINE, load(seen)).await {
            Ok(Ok(groups)) => groups,
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(LoadError("the views did not answer in time".into())),
        };
        let mut inner = self.lock();
        let pending = match inner.users.get_mut(user) {
            Some(e) => e.pending.take().unwrap_or_default(),
            None => Vec::new(),
        };
        for g in &groups {
            inner.join(g, user);
        }
        for change in &pending {
            inner.apply_for(user, change);
        }
        if let Some(e) = inner.users.get(user) {
            e.state.send_replace(Load::Ready);
        }
        drop(inner);
        counted.armed = false;
        Ok(attachment())
    }

    /// Loads `user`'s groups again (a session here that was not live when its groups
    /// were loaded has become live: membership records routed to this slot start at its
    /// presence, so the load must reach there). Changes routed meanwhile are applied on
    /// top, as for the first load; on an error they are applied to what was held.
    pub async fn reload<F, Fut>(self: &Arc<Self>, user: &str, load: F) -> Result<(), LoadError>
    where
        F: FnOnce(Vec<(i32, i64)>) -> Fut,
        Fut: Future<Output = Result<Vec<String>, LoadError>>,
    {
        let seen = {
            let mut inner = self.lock();
            let seen: Vec<(i32, i64)> = inner.seen.iter().map(|(p, o)| (*p, *o)).collect();
            let Some(e) = inner.users.get_mut(user) else {
                return Ok(());
            };
            if e.pending.is_some() {
                // A load is running: it is the one that counts.
                return Ok(());
            }
            e.pending = Some(Vec::new());
            seen
        };
        let loaded = match tokio::time::timeout(LOAD_DEADLINE, load(seen)).await {
            Ok(r) => r,
            Err(_) => Err(LoadError("the views did not answer in time".into())),
        };
        let mut inner = self.lock();
        let Some(e) = inner.users.get_mut(user) else {
            return loaded.map(|_| ());
        };
        let pending = e.pending.take().unwrap_or_default();
        if let Ok(groups) = &loaded {
            let held: Vec<String> = e.groups.iter().cloned().collect();
            for g in held {
                inner.leave(&g, user);
            }
            for g in groups {
                inner.join(g, user);
            }
        }
        for change in &pending {
            inner.apply_for(user, change);
        }
        loaded.map(|_| ())
    }

    /// The end offsets of `events` once this gateway's stream has started: a
    /// membership record routed before the stream started is older, so every load
    /// waits for the views to reach them.
    pub fn baseline(&self, ends: &[i64]) {
        let mut inner = self.lock();
        for (p, o) in ends.iter().enumerate() {
            let seen = inner.seen.entry(p as i32).or_insert(0);
            *seen = (*seen).max(*o);
        }
    }

    /// A session of `user` ended; the last one takes the user out of the index.
    fn detach(&self, user: &str) {
        self.lock().detach(user);
    }

    /// Applies a membership change routed to this slot: the record at `offset` of
    /// partition `partition` of `events`.
    pub fn apply(&self, change: &Change, partition: i32, offset: i64) {
        let mut inner = self.lock();
        let seen = inner.seen.entry(partition).or_insert(0);
        *seen = (*seen).max(offset + 1);
        let group = match change {
            Change::Join { conversation, .. } | Change::Leave { conversation, .. } => conversation,
        };
        match inner.last.get(group) {
            Some(last) if *last >= offset => return,
            _ => {
                inner.last.insert(group.clone(), offset);
            }
        }
        match change {
            Change::Join { users, .. } => {
                for u in users {
                    inner.apply_for(u, change);
                }
            }
            Change::Leave { user, .. } => inner.apply_for(user, change),
        }
    }

    /// The users with a session here who are members of `group`.
    pub fn members_here(&self, group: &str) -> Vec<String> {
        self.lock()
            .by_group
            .get(group)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether any user with a session here is a member of `group`.
    pub fn has_members_here(&self, group: &str) -> bool {
        self.lock().by_group.contains_key(group)
    }
}

/// The groups `user` is a member of, once the views reflect `applied` (partition, next
/// offset); retried for a few seconds (a projector restarting).
pub async fn load(
    views: &dyn parley_projector::Views,
    user: &str,
    applied: &[(i32, i64)],
) -> Result<Vec<String>, LoadError> {
    let mut delay = Duration::from_millis(100);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    if !applied.is_empty() {
        match views.wait_applied(applied, Duration::from_secs(10)).await {
            Ok(true) => {}
            Ok(false) => return Err(LoadError("the views are behind the log".into())),
            Err(e) => return Err(LoadError(e.to_string())),
        }
    }
    loop {
        match views.user_conversations(user, false).await {
            Ok(list) => {
                return Ok(list
                    .into_iter()
                    .filter(|c| c.kind == ConversationKind::Group)
                    .map(|c| c.conversation_id)
                    .collect())
            }
            Err(e) if tokio::time::Instant::now() + delay < deadline => {
                tracing::debug!(user, error = %e, "loading the user's groups; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(LoadError(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(c: &str, users: &[&str]) -> Change {
        Change::Join {
            conversation: c.into(),
            users: users.iter().map(|u| u.to_string()).collect(),
        }
    }

    fn leave(c: &str, u: &str) -> Change {
        Change::Leave {
            conversation: c.into(),
            user: u.into(),
        }
    }

    fn sorted(mut v: Vec<String>) -> Vec<String> {
        v.sort();
        v
    }

    fn index() -> Arc<GroupIndex> {
        Arc::new(GroupIndex::default())
    }

    async fn attached(index: &Arc<GroupIndex>, user: &str, groups: &[&str]) -> Attachment {
        let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        index
            .attach(user, |_| async move { Ok(groups) })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn follows_changes_of_attached_users_only() {
        let index = index();
        let amy = attached(&index, "amy", &["g"]).await;
        assert_eq!(index.members_here("g"), vec!["amy"]);
        index.apply(&join("g", &["bob", "amy"]), 0, 101);
        assert_eq!(
            sorted(index.members_here("g")),
            vec!["amy"],
            "bob has no session here"
        );
        index.apply(&join("h", &["amy"]), 0, 102);
        index.apply(&leave("g", "amy"), 0, 103);
        assert!(index.members_here("g").is_empty());
        assert_eq!(index.members_here("h"), vec!["amy"]);
        drop(amy);
        assert!(index.members_here("h").is_empty());
        assert!(!index.has_members_here("g") && !index.has_members_here("h"));
    }

    #[tokio::test]
    async fn changes_during_a_load_apply_on_top_of_it_in_order() {
        let index = index();
        let (go, wait) = tokio::sync::oneshot::channel::<()>();
        let i2 = index.clone();
        let loading = tokio::spawn(async move {
            i2.attach("amy", |_| async move {
                let _ = wait.await;
                // The load read the views before the changes below.
                Ok(vec!["g".to_string()])
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        index.apply(&leave("g", "amy"), 0, 104);
        index.apply(&join("h", &["amy"]), 0, 105);
        let _ = go.send(());
        let _amy = loading.await.unwrap().unwrap();
        assert!(
            index.members_here("g").is_empty(),
            "removed during the load"
        );
        assert_eq!(
            index.members_here("h"),
            vec!["amy"],
            "added during the load"
        );
    }

    #[tokio::test]
    async fn a_second_session_waits_for_the_first_load_and_the_last_one_cleans_up() {
        let index = index();
        let first = attached(&index, "amy", &["g"]).await;
        let second = index
            .attach("amy", |_| async {
                panic!("the second session does not load")
            })
            .await
            .unwrap();
        drop(first);
        assert_eq!(index.members_here("g"), vec!["amy"], "one session left");
        drop(second);
        assert!(index.members_here("g").is_empty());
    }

    #[tokio::test]
    async fn a_load_is_told_the_membership_records_applied_so_far() {
        let index = index();
        index.apply(&join("g", &["bob"]), 3, 41);
        index.apply(&join("g", &["bob"]), 3, 7);
        let told = std::sync::Mutex::new(Vec::new());
        let _amy = index
            .attach("amy", |seen| {
                *told.lock().unwrap() = seen;
                async { Ok(Vec::new()) }
            })
            .await
            .unwrap();
        assert_eq!(*told.lock().unwrap(), vec![(3, 42)]);
    }

    #[tokio::test]
    async fn an_older_change_arriving_late_changes_nothing() {
        let index = index();
        let _amy = attached(&index, "amy", &[]).await;
        index.apply(&join("g", &["amy"]), 0, 10);
        index.apply(&leave("g", "amy"), 0, 12);
        // The add at 10 again (routed again after a takeover, or retried late).
        index.apply(&join("g", &["amy"]), 0, 10);
        assert!(index.members_here("g").is_empty(), "still removed");
        index.apply(&join("g", &["amy"]), 0, 15);
        assert_eq!(index.members_here("g"), vec!["amy"]);
    }

    #[tokio::test]
    async fn a_failed_load_leaves_nothing_behind_and_the_next_session_loads_again() {
        let index = index();
        let r = index
            .attach("amy", |_| async { Err(LoadError("down".into())) })
            .await;
        assert!(r.is_err());
        index.apply(&join("g", &["amy"]), 0, 106);
        assert!(index.members_here("g").is_empty());
        let _amy = attached(&index, "amy", &["g"]).await;
        assert_eq!(index.members_here("g"), vec!["amy"]);
    }

    #[tokio::test]
    async fn an_abandoned_load_does_not_lock_the_user_out() {
        let index = index();
        // A waiting second session, then the loader's future is dropped (a long poll
        // whose client went away).
        let i2 = index.clone();
        let loader = tokio::spawn(async move {
            i2.attach("amy", |_| {
                std::future::pending::<Result<Vec<String>, LoadError>>()
            })
            .await
            .map(|_| ())
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let i3 = index.clone();
        let waiter = tokio::spawn(async move {
            i3.attach("amy", |_| async { Ok(Vec::new()) })
                .await
                .map(|_| ())
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        loader.abort();
        let _ = loader.await;
        assert!(waiter.await.unwrap().is_err(), "the waiter is told at once");
        // The next session loads by itself.
        let _amy = tokio::time::timeout(Duration::from_secs(1), attached(&index, "amy", &["g"]))
            .await
            .expect("not locked out");
        assert_eq!(index.members_here("g"), vec!["amy"]);
    }
}
