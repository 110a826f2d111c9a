//! Consumer groups and leases among the members of this process.
//!
//! A group's partitions are spread over its members in join order (partition `p` goes
//! to member `p mod n`) and spread again whenever a member joins or leaves. Each member
//! has a driver task that tells it of partitions gained and lost, and reads the ones it
//! owns from the group's committed offset (or the partition's start). Commits persist
//! in the log's database, so a member of the next run resumes there.

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

/// A member's id and where its assignment is published.
type Assigned = (u64, watch::Sender<BTreeSet<i32>>);

#[derive(Default)]
pub(crate) struct Groups {
    /// (group, topic) → members in join order, each with its assignment.
    members: HashMap<(String, String), Vec<Assigned>>,
    leases: HashMap<String, watch::Sender<Option<String>>>,
}

impl Groups {
    fn spread(&mut self, key: &(String, String), partitions: i32) {
        let Some(members) = self.members.get(key) else {
            return;
        };
        let n = members.len().max(1);
        for (i, (_, assign)) in members.iter().enumerate() {
            let mine: BTreeSet<i32> = (0..partitions).filter(|p| *p as usize % n == i).collect();
            assign.send_replace(mine);
        }
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
    {
        let mut groups = shared.groups.lock().unwrap_or_else(|p| p.into_inner());
        groups
            .members
            .entry(key.clone())
            .or_default()
            .push((id, assign_tx));
        groups.spread(&key, topic.partitions());
    }
    let (tx, events) = mpsc::channel(BUFFERED);
    let owned = Arc::new(Mutex::new(BTreeSet::new()));
    let partitions = topic.partitions();
    tokio::spawn(drive(
        shared.clone(),
        group.to_string(),
        topic,
        assign_rx,
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
            members.retain(|(id, _)| *id != self.id);
            if members.is_empty() {
                groups.members.remove(&self.key);
            }
        }
        groups.spread(&self.key, self.partitions);
    }
}

fn committed(shared: &Shared, group: &str, topic: &str, p: i32) -> Result<Option<i64>> {
    shared.meta_i64(&codec::commit_key(group, topic, p))
}

async fn drive(
    shared: Arc<Shared>,
    group: String,
    topic: Arc<Topic>,
    mut assign: watch::Receiver<BTreeSet<i32>>,
    tx: mpsc::Sender<Result<GroupEvent>>,
    owned: Arc<Mutex<BTreeSet<i32>>>,
) {
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
            for p in &lost {
                positions.remove(p);
            }
            owned
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|p| !lost.contains(p));
            if tx.send(Ok(GroupEvent::Revoked(lost))).await.is_err() {
                return;
            }
        }
        let gained: Vec<i32> = want
            .iter()
            .filter(|p| !positions.contains_key(p))
            .copied()
            .collect();
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
            _ = tx.closed() => return,
        }
    }
}

#[async_trait]
impl Subscription for Member {
    async fn next(&mut self) -> Option<Result<GroupEvent>> {
        self.events.recv().await
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
