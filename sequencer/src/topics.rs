//! The topics of DESIGN.md §3 as one declarative spec: names under a prefix, partition
//! counts, retention and compaction. `parley topics create` applies it; `describe` compares.

use std::collections::BTreeMap;
use std::fmt;

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;

/// Each topic of Parley, by role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TopicKind {
    Events,
    Receipts,
    Ephemeral,
    Presence,
    Deliveries,
    Inbox,
    Push,
    DeadLetters,
    Directory,
    Devices,
    PushState,
    Keys,
    TransitKeys,
}

impl TopicKind {
    pub const ALL: [TopicKind; 13] = [
        TopicKind::Events,
        TopicKind::Receipts,
        TopicKind::Ephemeral,
        TopicKind::Presence,
        TopicKind::Deliveries,
        TopicKind::Inbox,
        TopicKind::Push,
        TopicKind::DeadLetters,
        TopicKind::Directory,
        TopicKind::Devices,
        TopicKind::PushState,
        TopicKind::Keys,
        TopicKind::TransitKeys,
    ];

    /// The name after the prefix.
    pub fn suffix(self) -> &'static str {
        match self {
            TopicKind::Events => "events",
            TopicKind::Receipts => "receipts",
            TopicKind::Ephemeral => "ephemeral",
            TopicKind::Presence => "presence",
            TopicKind::Deliveries => "deliveries",
            TopicKind::Inbox => "inbox",
            TopicKind::Push => "push",
            TopicKind::DeadLetters => "dead-letters",
            TopicKind::Directory => "directory",
            TopicKind::Devices => "devices",
            TopicKind::PushState => "push-state",
            TopicKind::Keys => "keys",
            TopicKind::TransitKeys => "transit-keys",
        }
    }
}

impl fmt::Display for TopicKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.suffix())
    }
}

/// The knobs of the spec; the defaults are DESIGN.md §3's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicSettings {
    /// Put before every topic name, e.g. `parley.` gives `parley.events`.
    pub prefix: String,
    /// Partitions of the keyed topics (all but deliveries and directory).
    pub partitions: i32,
    /// Partitions of `deliveries`: one per gateway slot.
    pub gateway_slots: i32,
    pub replication_factor: i16,
    /// `min.insync.replicas`; by default 2 when the replication factor is 3 or more.
    pub min_insync_replicas: Option<i16>,
}

impl Default for TopicSettings {
    fn default() -> Self {
        TopicSettings {
            prefix: "parley.".into(),
            partitions: 16,
            gateway_slots: 64,
            replication_factor: 1,
            min_insync_replicas: None,
        }
    }
}

impl TopicSettings {
    pub fn name(&self, kind: TopicKind) -> String {
        format!("{}{}", self.prefix, kind.suffix())
    }

    /// Every topic's full name.
    pub fn names(&self) -> TopicNames {
        TopicNames {
            events: self.name(TopicKind::Events),
            receipts: self.name(TopicKind::Receipts),
            ephemeral: self.name(TopicKind::Ephemeral),
            presence: self.name(TopicKind::Presence),
            deliveries: self.name(TopicKind::Deliveries),
            inbox: self.name(TopicKind::Inbox),
            push: self.name(TopicKind::Push),
            dead_letters: self.name(TopicKind::DeadLetters),
            directory: self.name(TopicKind::Directory),
            devices: self.name(TopicKind::Devices),
            push_state: self.name(TopicKind::PushState),
            keys: self.name(TopicKind::Keys),
            transit_keys: self.name(TopicKind::TransitKeys),
        }
    }

    /// The spec of every topic.
    pub fn spec(&self) -> Vec<TopicSpec> {
        TopicKind::ALL.iter().map(|&k| self.spec_of(k)).collect()
    }

    pub fn spec_of(&self, kind: TopicKind) -> TopicSpec {
        let mut configs = BTreeMap::new();
        let mut set = |k: &str, v: i64| {
            configs.insert(k.to_string(), v.to_string());
        };
        match kind {
            TopicKind::Events => {
                set("retention.ms", -1);
                set("retention.bytes", -1);
            }
            // Compacted, keyed by (conversation, member, kind): the newest mark of each
            // member is kept for good, so a rebuilt receipt view equals the live one.
            TopicKind::Receipts => set("segment.ms", HOUR_MS),
            TopicKind::Ephemeral => {
                set("retention.ms", MINUTE_MS);
                set("segment.ms", MINUTE_MS);
            }
            TopicKind::Presence => {
                set("segment.ms", HOUR_MS);
                set("delete.retention.ms", HOUR_MS);
            }
            // Routed copies, written again from the fanout-worker's committed position:
            // `flush.messages` at Kafka's default (Kafka never fsyncs on its own
            // account) tells the embedded log not to sync them on theirs either.
            TopicKind::Deliveries => {
                set("retention.ms", HOUR_MS);
                set("segment.ms", 10 * MINUTE_MS);
                set("flush.messages", i64::MAX);
            }
            TopicKind::Inbox => set("retention.ms", 30 * DAY_MS),
            TopicKind::Push => set("retention.ms", DAY_MS),
            TopicKind::DeadLetters => set("retention.ms", 30 * DAY_MS),
            // Compacted, keyed by projector replica: each one's last announcement is
            // kept; a stopped replica's key is deleted by a tombstone.
            TopicKind::Directory => {
                set("segment.ms", 10 * MINUTE_MS);
                set("delete.retention.ms", MINUTE_MS);
            }
            // Compacted, keyed by user and device (or muted conversation): each
            // setting's newest value is kept for good; a tombstone removes it.
            TopicKind::Devices => {
                set("segment.ms", HOUR_MS);
                set("delete.retention.ms", DAY_MS);
            }
            // Compacted, keyed by (user, conversation): the push role's last
            // notification of each, written before it is sent (see the push crate).
            TopicKind::PushState => {
                set("segment.ms", HOUR_MS);
                set("delete.retention.ms", HOUR_MS);
            }
            // Compacted, keyed by key id: a data key (or a transit key) until its
            // tombstone. The bound on how long an erased key stays on the broker: its
            // segment rolls within `segment.ms`, and is compacted at most
            // `max.compaction.lag.ms` later, whatever the dirty ratio (docs/ARCHITECTURE.md,
            // *Erasure*).
            TopicKind::Keys | TopicKind::TransitKeys => {
                set("segment.ms", HOUR_MS);
                set("min.compaction.lag.ms", 0);
                set("max.compaction.lag.ms", DAY_MS);
                set("delete.retention.ms", DAY_MS);
            }
        }
        let policy = if matches!(
            kind,
            TopicKind::Presence
                | TopicKind::Receipts
                | TopicKind::Directory
                | TopicKind::Devices
                | TopicKind::PushState
                | TopicKind::Keys
                | TopicKind::TransitKeys
        ) {
            "compact"
        } else {
            "delete"
        };
        configs.insert("cleanup.policy".into(), policy.into());
        let min_isr = self
            .min_insync_replicas
            .unwrap_or(if self.replication_factor >= 3 { 2 } else { 1 });
        configs.insert("min.insync.replicas".into(), min_isr.to_string());
        TopicSpec {
            kind: Some(kind),
            name: self.name(kind),
            partitions: match kind {
                TopicKind::Deliveries => self.gateway_slots,
                // One partition: every reader reads all of it, in one order.
                TopicKind::Directory | TopicKind::TransitKeys => 1,
                _ => self.partitions,
            },
            replication_factor: self.replication_factor,
            configs,
        }
    }
}

/// The full name of each of Parley's topics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicNames {
    pub events: String,
    pub receipts: String,
    pub ephemeral: String,
    pub presence: String,
    pub deliveries: String,
    pub inbox: String,
    pub push: String,
    /// Outputs the log refused (too large, invalid), parked with why.
    pub dead_letters: String,
    /// Where projector replicas announce what they serve (see the projector's
    /// `directory` module).
    pub directory: String,
    /// Push settings: devices and muted conversations, keyed by user.
    pub devices: String,
    /// The push role's record of what it notified (see the push crate).
    pub push_state: String,
    /// Data keys of sealed content, keyed by key id, partitioned like `events`.
    pub keys: String,
    /// The gateways' transit keys, one partition.
    pub transit_keys: String,
}

/// One topic as it should be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicSpec {
    /// `None` for a topic outside Parley's own set (tests, tools).
    pub kind: Option<TopicKind>,
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i16,
    /// Topic-level configs, e.g. `retention.ms`.
    pub configs: BTreeMap<String, String>,
}

impl TopicSpec {
    /// A plain topic with the broker's defaults.
    pub fn plain(name: impl Into<String>, partitions: i32, replication_factor: i16) -> Self {
        TopicSpec {
            kind: None,
            name: name.into(),
            partitions,
            replication_factor,
            configs: BTreeMap::new(),
        }
    }
}

/// How an existing topic compares with its spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TopicStatus {
    Created,
    /// Exists and matches.
    Matches,
    Missing,
    /// Exists but differs; each string names one difference.
    Mismatch(Vec<String>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicReport {
    pub spec: TopicSpec,
    /// Partitions the topic has, if it exists.
    pub partitions: Option<i32>,
    pub status: TopicStatus,
}

impl TopicReport {
    pub fn is_ok(&self) -> bool {
        matches!(self.status, TopicStatus::Created | TopicStatus::Matches)
    }

    /// Differences between an existing topic and its spec.
    pub fn compare(
        spec: &TopicSpec,
        partitions: i32,
        configs: &BTreeMap<String, String>,
    ) -> TopicReport {
        let mut problems = Vec::new();
        if partitions != spec.partitions {
            problems.push(format!(
                "has {partitions} partitions, the spec says {}",
                spec.partitions
            ));
        }
        for (k, want) in &spec.configs {
            match configs.get(k) {
                Some(have) if have == want => {}
                Some(have) => problems.push(format!("{k} is {have}, the spec says {want}")),
                None => problems.push(format!("{k} is unset, the spec says {want}")),
            }
        }
        TopicReport {
            spec: spec.clone(),
            partitions: Some(partitions),
            status: if problems.is_empty() {
                TopicStatus::Matches
            } else {
                TopicStatus::Mismatch(problems)
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_spec_is_design_section_3() {
        let spec = TopicSettings::default().spec();
        let by_name = |n: &str| spec.iter().find(|s| s.name == n).unwrap();
        assert_eq!(spec.len(), 13);
        for compacted in ["parley.devices", "parley.push-state", "parley.keys"] {
            assert_eq!(by_name(compacted).configs["cleanup.policy"], "compact");
            assert_eq!(by_name(compacted).partitions, 16);
        }
        assert_eq!(by_name("parley.directory").partitions, 1);
        // Keys of sealed content: partitioned like events; an erased key is compacted
        // away within a day of its segment rolling.
        let transit = by_name("parley.transit-keys");
        assert_eq!(transit.partitions, 1);
        assert_eq!(transit.configs["cleanup.policy"], "compact");
        assert_eq!(
            by_name("parley.keys").configs["max.compaction.lag.ms"],
            "86400000"
        );
        assert_eq!(
            by_name("parley.directory").configs["cleanup.policy"],
            "compact"
        );
        assert_eq!(by_name("parley.events").partitions, 16);
        assert_eq!(by_name("parley.events").configs["retention.ms"], "-1");
        assert_eq!(by_name("parley.deliveries").partitions, 64);
        // Kafka's default; the embedded log does not sync routed copies on their own.
        assert_eq!(
            by_name("parley.deliveries").configs["flush.messages"],
            i64::MAX.to_string()
        );
        assert!(!by_name("parley.events")
            .configs
            .contains_key("flush.messages"));
        assert_eq!(
            by_name("parley.presence").configs["cleanup.policy"],
            "compact"
        );
        assert_eq!(by_name("parley.ephemeral").configs["retention.ms"], "60000");
        assert_eq!(
            by_name("parley.inbox").configs["retention.ms"],
            "2592000000"
        );
        assert_eq!(
            by_name("parley.receipts").configs["cleanup.policy"],
            "compact"
        );
        assert_eq!(by_name("parley.push").configs["retention.ms"], "86400000");
    }

    #[test]
    fn replicated_clusters_get_min_isr_two() {
        let s = TopicSettings {
            replication_factor: 3,
            ..Default::default()
        };
        assert_eq!(
            s.spec_of(TopicKind::Events).configs["min.insync.replicas"],
            "2"
        );
    }

    #[test]
    fn compare_names_each_difference() {
        let spec = TopicSettings::default().spec_of(TopicKind::Events);
        let mut configs = spec.configs.clone();
        assert_eq!(
            TopicReport::compare(&spec, 16, &configs).status,
            TopicStatus::Matches
        );
        configs.insert("retention.ms".into(), "1000".into());
        let r = TopicReport::compare(&spec, 8, &configs);
        let TopicStatus::Mismatch(p) = r.status else {
            panic!("expected a mismatch")
        };
        assert_eq!(p.len(), 2);
        assert!(p[0].contains("8 partitions"));
        assert!(p[1].contains("retention.ms is 1000"));
    }
}
