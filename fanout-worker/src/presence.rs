//! Who is connected where: the latest presence record of each (user, gateway slot),
//! read from the compacted `presence` topic. A record is live until its `expires_at`,
//! or while its slot's lease (a [`SlotLease`] of the gateway's current run) lives; a
//! tombstone ends it at once.

use std::collections::{BTreeMap, HashMap};

use parley_schemas::{decode, PresenceUpdated, SlotLease};
use parley_sequencer::LogRecord;
use tracing::warn;

#[derive(Default)]
pub struct PresenceView {
    /// user → gateway slot → (expires_at, occurred_at) (ms).
    users: HashMap<String, BTreeMap<i32, (i64, i64)>>,
    /// gateway slot → its lease.
    leases: BTreeMap<i32, SlotLease>,
    /// gateway slot → (user, slot) records held for it, expired or not: the slots a
    /// large group's messages go to.
    per_slot: BTreeMap<i32, usize>,
    /// Next offset to read, per presence partition.
    applied: BTreeMap<i32, i64>,
    /// The latest record of each (user, slot), when it asked for an acknowledgement:
    /// a worker that takes partitions over acknowledges these again.
    requests: BTreeMap<(String, i32), (AckRequest, i64)>,
}

/// A presence record asking for an acknowledgement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AckRequest {
    pub user_id: String,
    pub gateway_slot: i32,
    pub presence_partition: i32,
    pub presence_offset: i64,
}

impl PresenceView {
    /// Applies one record of the presence topic.
    pub fn apply(&mut self, record: &LogRecord, now_ms: i64) -> Option<AckRequest> {
        self.applied.insert(record.partition, record.offset + 1);
        let key = record
            .key
            .as_deref()
            .and_then(|k| std::str::from_utf8(k).ok())?;
        if let Some(slot) = SlotLease::slot_of_key(key) {
            match record.value.as_deref().map(decode::<SlotLease>) {
                Some(Ok(lease)) => {
                    self.leases.insert(slot, lease);
                }
                Some(Err(e)) => {
                    warn!(partition = record.partition, offset = record.offset, error = %e, "bad slot lease skipped")
                }
                None => {
                    self.leases.remove(&slot);
                }
            }
            return None;
        }
        let Some(value) = &record.value else {
            // Tombstone: key is "user/slot".
            let (user, slot) = key.rsplit_once('/')?;
            let slot: i32 = slot.parse().ok()?;
            self.requests.remove(&(user.to_string(), slot));
            if let Some(slots) = self.users.get_mut(user) {
                if slots.remove(&slot).is_some() {
                    if let Some(n) = self.per_slot.get_mut(&slot) {
                        *n -= 1;
                        if *n == 0 {
                            self.per_slot.remove(&slot);
                        }
                    }
                }
                if slots.is_empty() {
                    self.users.remove(user);
                }
            }
            return None;
        };
        let p = match decode::<PresenceUpdated>(value) {
            Ok(p) => p,
            Err(e) => {
                warn!(partition = record.partition, offset = record.offset, error = %e, "bad presence record skipped");
                return None;
            }
        };
        let fresh = self
            .users
            .entry(p.user_id.clone())
            .or_default()
            .insert(p.gateway_slot, (p.expires_at, p.meta.occurred_at))
            .is_none();
        if fresh {
            *self.per_slot.entry(p.gateway_slot).or_default() += 1;
        }
        let key = (p.user_id.clone(), p.gateway_slot);
        if !p.ack {
            self.requests.remove(&key);
            return None;
        }
        let request = AckRequest {
            user_id: p.user_id,
            gateway_slot: p.gateway_slot,
            presence_partition: record.partition,
            presence_offset: record.offset,
        };
        self.requests.insert(key, (request.clone(), p.expires_at));
        (p.expires_at > now_ms).then_some(request)
    }

    /// Live records that asked for an acknowledgement and have not been superseded.
    pub fn open_requests(&self, now_ms: i64) -> Vec<AckRequest> {
        self.requests
            .values()
            .filter(|(_, expires)| *expires > now_ms)
            .map(|(r, _)| r.clone())
            .collect()
    }

    /// The gateway slots where `user` is connected now.
    pub fn online_slots(&self, user: &str, now_ms: i64) -> Vec<i32> {
        self.users
            .get(user)
            .map(|slots| {
                slots
                    .iter()
                    .filter(|(slot, (expires, occurred))| {
                        *expires > now_ms
                            || self
                                .leases
                                .get(slot)
                                .is_some_and(|l| l.keeps(**slot, *occurred, now_ms))
                    })
                    .map(|(s, _)| *s)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The gateway slots that hold any presence record (a superset of those where
    /// someone is online now).
    pub fn active_slots(&self) -> Vec<i32> {
        self.per_slot.keys().copied().collect()
    }

    /// Whether every partition has been read up to `ends` (partition → end offset).
    pub fn caught_up(&self, ends: &[i64]) -> bool {
        ends.iter().enumerate().all(|(p, end)| {
            *end == 0 || self.applied.get(&(p as i32)).copied().unwrap_or(0) >= *end
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_slots_follow_records_and_tombstones() {
        let mut v = PresenceView::default();
        v.apply(&rec(0, "u/1", Some(up("u", 1, 1000, false))), 0);
        v.apply(&rec(1, "u/1", Some(up("u", 1, 2000, false))), 0);
        v.apply(&rec(2, "w/1", Some(up("w", 1, 2000, false))), 0);
        v.apply(&rec(3, "u/4", Some(up("u", 4, 2000, false))), 0);
        assert_eq!(v.active_slots(), vec![1, 4]);
        v.apply(&rec(4, "u/1", None), 0);
        assert_eq!(v.active_slots(), vec![1, 4], "w is still at 1");
        v.apply(&rec(5, "w/1", None), 0);
        v.apply(&rec(6, "w/1", None), 0);
        assert_eq!(v.active_slots(), vec![4]);
    }
    use bytes::Bytes;
    use parley_schemas::{encode, Meta};

    fn rec(offset: i64, key: &str, value: Option<PresenceUpdated>) -> LogRecord {
        LogRecord {
            topic: "p".into(),
            partition: 0,
            offset,
            timestamp_ms: None,
            key: Some(Bytes::from(key.to_string())),
            value: value.map(|v| Bytes::from(encode(&v).unwrap())),
        }
    }

    fn up(user: &str, slot: i32, expires_at: i64, ack: bool) -> PresenceUpdated {
        PresenceUpdated {
            meta: Meta::new("gateway"),
            user_id: user.into(),
            gateway_slot: slot,
            sessions: 1,
            expires_at,
            ack,
        }
    }

    #[test]
    fn online_until_expiry_or_tombstone() {
        let mut v = PresenceView::default();
        assert!(v
            .apply(&rec(0, "u/1", Some(up("u", 1, 1000, false))), 0)
            .is_none());
        v.apply(&rec(1, "u/2", Some(up("u", 2, 2000, false))), 0);
        assert_eq!(v.online_slots("u", 500), vec![1, 2]);
        assert_eq!(v.online_slots("u", 1500), vec![2]);
        v.apply(&rec(2, "u/2", None), 0);
        assert!(v.online_slots("u", 1500).is_empty());
        assert!(v.caught_up(&[3]));
        assert!(!v.caught_up(&[4]));
    }

    fn lease(offset: i64, slot: i32, since: i64, expires_at: i64) -> LogRecord {
        let l = SlotLease {
            meta: Meta::new("gateway"),
            gateway_slot: slot,
            since,
            expires_at,
        };
        LogRecord {
            topic: "p".into(),
            partition: 0,
            offset,
            timestamp_ms: None,
            key: Some(Bytes::from(SlotLease::key(slot))),
            value: Some(Bytes::from(encode(&l).unwrap())),
        }
    }

    fn at(mut u: PresenceUpdated, occurred_at: i64) -> PresenceUpdated {
        u.meta.occurred_at = occurred_at;
        u
    }

    #[test]
    fn a_lease_keeps_the_records_of_its_run_alive_and_no_older_ones() {
        let mut v = PresenceView::default();
        // Written at 100 (this run began at 50), at 10 (an earlier run's), expiring at 1000.
        v.apply(&rec(0, "u/1", Some(at(up("u", 1, 1000, false), 100))), 0);
        v.apply(&rec(1, "old/1", Some(at(up("old", 1, 1000, false), 10))), 0);
        v.apply(&rec(2, "w/2", Some(at(up("w", 2, 1000, false), 100))), 0);
        v.apply(&lease(3, 1, 50, 5000), 0);
        assert_eq!(v.online_slots("u", 2000), vec![1], "kept by the lease");
        assert!(v.online_slots("old", 2000).is_empty(), "before the run");
        assert!(v.online_slots("w", 2000).is_empty(), "another slot's lease");
        assert!(v.online_slots("u", 5000).is_empty(), "the lease lapsed");
        // A later run of slot 1 does not revive the earlier run's records.
        v.apply(&lease(4, 1, 4000, 9000), 0);
        assert!(v.online_slots("u", 6000).is_empty());
        assert!(
            v.online_slots("u", 500).contains(&1),
            "its own expiry still counts"
        );
        assert_eq!(v.active_slots(), vec![1, 2], "leases are not users");
    }

    #[test]
    fn live_records_with_ack_ask_for_one() {
        let mut v = PresenceView::default();
        let ack = v
            .apply(&rec(5, "u/1", Some(up("u", 1, 1000, true))), 0)
            .unwrap();
        assert_eq!((ack.gateway_slot, ack.presence_offset), (1, 5));
        assert!(v
            .apply(&rec(6, "u/1", Some(up("u", 1, 1000, true))), 2000)
            .is_none());
    }
}
