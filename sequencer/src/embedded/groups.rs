//! Consumer groups and leases among the members of this process.
//!
//! A group's partitions are spread over its members in join order (partition `p` goes
//! to member `p mod n`) and spread again whenever a member joins or leaves. Each member
//! has a driver task that tells it of partitions gained and lost, and reads the ones it
//! owns from the group's committed offset (or the partition's start). Commits persist
//! in the log's database, so a member of the next run resumes there.
//!
//! A partition moves as in Kafka's eager rebalance: its new owner is told of it only
//! once the old owner has taken the news of its loss (its `next` returned the
//! `Revoked`), or has left. Two members never hold one partition at once.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::{mpsc, watch};

use super::{codec, read, store_error, Shared, Topic};
use crate::error::Result;
use crate::log::{GroupEvent, Lease, StartAt, Subscription};

/// Events a member holds that it has not taken yet.
const BUFFERED: usize = 1024;

static MEMBER_IDS: AtomicU64 = AtomicU64::new(0);

/// A member of a group, as the group knows it.
struct Entry {
    id: u64,
    /// Where its assignment is published.
    assign: watch::Sender<BTreeSet<i32>>,
    /// What it holds: gained when its driver tells it, let go when it takes a revocation.
    owned: Arc<Mutex<BTreeSet<i32>>>,
}

pub(crate) struct Groups {
    /// (group, topic) → members in join order.
    members: HashMap<(String, String), Vec<Entry>>,
    leases: HashMap<String, watch::Sender<Option<String>>>,
    /// Bumped whenever a member lets partitions go: drivers waiting for them look again.
    released: watch::Sender<u64>,
}

impl Default for Groups {
    fn default() -> Self {
        Groups {
            members: HashMap::new(),
            leases: HashMap::new(),
            released: watch::channel(0).0,
        }
    }
}

impl Groups {
    fn spread(&mut self, key: &(String, String), partitions: i32) {
        let Some(members) = self.members.get(key) else {
            return;
        };
        let n = members.len().max(1);
        for (i, m) in members.iter().enumerate() {
            let mine: BTreeSet<i32> = (0..partitions).filter(|p| *p as usize % n == i).collect();
            m.assign.send_replace(mine);
        }
    }

    /// Whether a member of `key` other than `me` holds partition `p`.
    fn held_elsewhere(&self, key: &(String, String), me: u64, p: i32) -> bool {
        self.members.get(key).is_some_and(|members| {
            members.iter().any(|m| {
                m.id != me
                    && m.owned
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .contains(&p)
            })
        })
    }

    fn release(&self) {
        self.released.send_modify(|n| *n = n.wrapping_add(1));
    }
}

pub(crate) struct Member {
    shared: Arc<Shared>,
    key: (String, String),
    id: u64,
    partitions: i32,
    events: mpsc::Receiver<Result<GroupEvent>>,
    owned: Arc<Mutex<BTreeSet<i32>>>,
}

pub(crate) fn join(shared: Arc<Shared>, group: &str, topic: Arc<Topic>) -> Member {
    let key = (group.to_string(), topic.name.clone());
    let id = MEMBER_IDS.fetch_add(1, Ordering::Relaxed);
    let (assign_tx, assign_rx) = watch::channel(BTreeSet::new());
    let owned = Arc::new(Mutex::new(BTreeSet::new()));
    let released = {
        let mut groups = shared.groups.lock().unwrap_or_else(|p| p.into_inner());
        groups.members.entry(key.clone()).or_default().push(Entry {
            id,
            assign: assign_tx,
            owned: owned.clone(),
        });
        groups.spread(&key, topic.partitions());
        groups.released.subscribe()
    };
    let (tx, events) = mpsc::channel(BUFFERED);
    let partitions = topic.partitions();
    tokio::spawn(drive(
        shared.clone(),
        (key.clone(), id),
        topic,
        (assign_rx, released),
        tx,
        owned.clone(),
    ));
    Member {
        shared,
        key,
        id,
        partitions,
        events,
        owned,
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let mut groups = self.shared.groups.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(members) = groups.members.get_mut(&self.key) {
            members.retain(|m| m.id != self.id);
            if members.is_empty() {
                groups.members.remove(&self.key);
            }
        }
        groups.spread(&self.key, self.partitions);
        // What it held is free.
        groups.release();
    }
}

fn committed(shared: &Shared, group: &str, topic: &str, p: i32) -> Result<Option<i64>> {
    shared.meta_i64(&codec::commit_key(group, topic, p))
}

/// A member's driver: `me` is its group's key and its id; `watches`, its assignment and
/// the group's releases.
async fn drive(
    shared: Arc<Shared>,
    me: ((String, String), u64),
    topic: Arc<Topic>,
    watches: (watch::Receiver<BTreeSet<i32>>, watch::Receiver<u64>),
    tx: mpsc::Sender<Result<GroupEvent>>,
    owned: Arc<Mutex<BTreeSet<i32>>>,
) {
    let ((key, id), (mut assign, mut released)) = (me, watches);
    let group = key.0.clone();
    let mut positions: BTreeMap<i32, i64> = BTreeMap::new();
    let mut changed = topic.changed.subscribe();
    loop {
        let want = assign.borrow_and_update().clone();
        let lost: Vec<i32> = positions
            .keys()
            .filter(|p| !want.contains(p))
            .copied()
            .collect();
        if !lost.is_empty() {
            // Still held until the member takes the news (`Member::next`).
            for p in &lost {
                positions.remove(p);
            }
            if tx.send(Ok(GroupEvent::Revoked(lost))).await.is_err() {
                return;
            }
        }
        released.borrow_and_update();
        let gained: Vec<i32> = {
            let groups = shared.groups.lock().unwrap_or_else(|p| p.into_inner());
            want.iter()
                .filter(|p| !positions.contains_key(p) && !groups.held_elsewhere(&key, id, **p))
                .copied()
                .collect()
        };
        if !gained.is_empty() {
            for p in &gained {
                let from = match committed(&shared, &group, &topic.name, *p) {
                    Ok(Some(o)) => read::begin(&topic, *p, StartAt::Offset(o)),
                    Ok(None) => read::begin(&topic, *p, StartAt::Beginning),
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                positions.insert(*p, from);
            }
            owned
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(gained.iter().copied());
            if tx.send(Ok(GroupEvent::Assigned(gained))).await.is_err() {
                return;
            }
        }
        changed.borrow_and_update();
        match read::pass(&shared, &topic, &mut positions, &tx, GroupEvent::Record).await {
            read::Pass::Stop => return,
            read::Pass::More => continue,
            read::Pass::Idle => {}
        }
        tokio::select! {
            r = changed.changed() => if r.is_err() { return },
            r = assign.changed() => if r.is_err() { return },
            r = released.changed() => if r.is_err() { return },
            _ = tx.closed() => return,
        }
    }
}

#[async_trait]
impl Subscription for Member {
    async fn next(&mut self) -> Option<Result<GroupEvent>> {
        let event = self.events.recv().await;
        if let Some(Ok(GroupEvent::Revoked(lost))) = &event {
            // Taken: the partitions are free for their new owners.
            self.owned
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|p| !lost.contains(p));
            self.shared
                .groups
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .release();
        }
        event
    }

    fn commit(&self, offsets: &[(i32, i64)]) -> Result<()> {
        let owned = self.owned.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let meta = self.shared.cf(codec::META)?;
        let mut wb = rocksdb::WriteBatch::default();
        for (p, o) in offsets.iter().filter(|(p, _)| owned.contains(p)) {
            wb.put_cf(
                meta,
                codec::commit_key(&self.key.0, &self.key.1, *p),
                o.to_be_bytes(),
            );
        }
        self.shared.db.write(wb).map_err(store_error)
    }

    async fn committed(&self, partitions: &[i32]) -> Result<Vec<(i32, Option<i64>)>> {
        partitions
            .iter()
            .map(|p| Ok((*p, committed(&self.shared, &self.key.0, &self.key.1, *p)?)))
            .collect()
    }
}

/// Takes lease `name`; an earlier holder in this process learns it lost it.
pub(crate) fn lease(shared: &Shared, name: &str) -> Lease {
    let (tx, rx) = watch::channel(None);
    let mut groups = shared.groups.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(earlier) = groups.leases.insert(name.to_string(), tx) {
        earlier.send_replace(Some(format!("lease {name} taken over by a newer holder")));
    }
    Lease::new(rx, Arc::new(AtomicBool::new(false)))
}
