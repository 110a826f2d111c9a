//! Consumer-group membership. Offsets are ours to commit (`enable.auto.commit=false`):
//! a member commits only what its outputs made durable. librdkafka runs the rebalance
//! callbacks inside `recv`, so they are queued here as events and handed out before
//! the record that follows them.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::{Offset, TopicPartitionList};
use tracing::{info, warn};

use super::config::KafkaConfig;
use super::errors::config as config_error;
use crate::error::{Error, Result};
use crate::log::{GroupEvent, LogRecord, Subscription};

/// How long one wait for a record lasts before the queue is polled again.
const KEEP_POLLING: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Shared {
    events: VecDeque<GroupEvent>,
    owned: BTreeSet<i32>,
    /// Next offset to read, per partition, as last committed by the member.
    done: BTreeMap<i32, i64>,
}

pub struct GroupContext {
    topic: String,
    shared: Arc<Mutex<Shared>>,
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else {
            return;
        };
        let parts = partitions_of(tpl, &self.topic);
        let mut shared = lock(&self.shared);
        // Make what is done durable before another member takes these partitions over.
        let mut offsets = TopicPartitionList::new();
        for p in &parts {
            if let Some(&o) = shared.done.get(p) {
                let _ = offsets.add_partition_offset(&self.topic, *p, Offset::Offset(o));
            }
            shared.owned.remove(p);
            shared.done.remove(p);
        }
        if offsets.count() > 0 {
            if let Err(e) = consumer.commit(&offsets, CommitMode::Sync) {
                warn!(topic = %self.topic, error = %e, "commit on revocation failed; a successor will repeat some records");
            }
        }
        info!(topic = %self.topic, partitions = ?parts, "partitions revoked");
        shared.events.push_back(GroupEvent::Revoked(parts));
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let parts = partitions_of(tpl, &self.topic);
                if parts.is_empty() {
                    return;
                }
                info!(topic = %self.topic, partitions = ?parts, "partitions assigned");
                let mut shared = lock(&self.shared);
                shared.owned.extend(parts.iter().copied());
                shared.events.push_back(GroupEvent::Assigned(parts));
            }
            Rebalance::Error(e) => warn!(topic = %self.topic, error = %e, "rebalance error"),
            Rebalance::Revoke(_) => {}
        }
    }
}

fn partitions_of(tpl: &TopicPartitionList, topic: &str) -> Vec<i32> {
    tpl.elements()
        .iter()
        .filter(|e| e.topic() == topic)
        .map(|e| e.partition())
        .collect()
}

fn lock(m: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub struct KafkaSubscription {
    topic: String,
    consumer: Arc<StreamConsumer<GroupContext>>,
    shared: Arc<Mutex<Shared>>,
    stash: Option<LogRecord>,
    timeout: Duration,
}

impl KafkaSubscription {
    fn partition_list(&self, partitions: &[i32]) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            tpl.add_partition(&self.topic, *p);
        }
        tpl
    }

    pub(crate) fn new(config: &KafkaConfig, group: &str, topic: &str) -> Result<Self> {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let context = GroupContext {
            topic: topic.to_string(),
            shared: shared.clone(),
        };
        // A member of a consumer group reads records every message passes (the
        // fanout-worker's, the push role's), unlike a lease, which only holds its group.
        let consumer: StreamConsumer<GroupContext> = config
            .bulk_of(topic, config.group_consumer(group))
            .create_with_context(context)
            .map_err(config_error)?;
        consumer.subscribe(&[topic]).map_err(config_error)?;
        Ok(KafkaSubscription {
            topic: topic.to_string(),
            consumer: Arc::new(consumer),
            shared,
            stash: None,
            timeout: Duration::from_millis(u64::from(config.request_timeout_ms)),
        })
    }
}

#[async_trait]
impl Subscription for KafkaSubscription {
    async fn next(&mut self) -> Option<Result<GroupEvent>> {
        loop {
            if let Some(e) = lock(&self.shared).events.pop_front() {
                return Some(Ok(e));
            }
            if let Some(r) = self.stash.take() {
                return Some(Ok(GroupEvent::Record(r)));
            }
            // Asked again every second: each ask is a poll of librdkafka's queue, which
            // keeps this member in the group (`max.poll.interval.ms`) while every
            // partition it owns is paused and no record comes.
            let Ok(received) = tokio::time::timeout(KEEP_POLLING, self.consumer.recv()).await
            else {
                continue;
            };
            match received {
                Ok(m) => {
                    let record = super::reader::to_record(&m);
                    // A rebalance served during this recv comes first.
                    self.stash = Some(record);
                }
                Err(e) => {
                    use rdkafka::error::RDKafkaErrorCode as C;
                    if matches!(
                        e.rdkafka_error_code(),
                        Some(C::Fatal | C::UnknownTopicOrPartition)
                    ) {
                        return Some(Err(Error::Unavailable(format!("{}: {e}", self.topic))));
                    }
                    warn!(topic = %self.topic, error = %e, "group consumer error; retrying");
                }
            }
        }
    }

    fn pause(&self, partitions: &[i32]) -> Result<bool> {
        // librdkafka drops what it fetched ahead for them and fetches again from the
        // next record not handed out when they are resumed.
        let tpl = self.partition_list(partitions);
        self.consumer
            .pause(&tpl)
            .map_err(|e| Error::Unavailable(format!("{}: pause: {e}", self.topic)))?;
        Ok(true)
    }

    fn resume(&self, partitions: &[i32]) -> Result<()> {
        let tpl = self.partition_list(partitions);
        self.consumer
            .resume(&tpl)
            .map_err(|e| Error::Unavailable(format!("{}: resume: {e}", self.topic)))
    }

    fn commit(&self, offsets: &[(i32, i64)]) -> Result<()> {
        let mut tpl = TopicPartitionList::new();
        {
            let mut shared = lock(&self.shared);
            for &(p, o) in offsets {
                if shared.owned.contains(&p) {
                    shared.done.insert(p, o);
                    tpl.add_partition_offset(&self.topic, p, Offset::Offset(o))
                        .map_err(|e| Error::Config(e.to_string()))?;
                }
            }
        }
        if tpl.count() == 0 {
            return Ok(());
        }
        self.consumer
            .commit(&tpl, CommitMode::Async)
            .map_err(|e| Error::Unavailable(format!("commit: {e}")))
    }

    async fn committed(&self, partitions: &[i32]) -> Result<Vec<(i32, Option<i64>)>> {
        let mut tpl = TopicPartitionList::new();
        for &p in partitions {
            tpl.add_partition(&self.topic, p);
        }
        let (consumer, timeout, topic) = (self.consumer.clone(), self.timeout, self.topic.clone());
        let got = tokio::task::spawn_blocking(move || consumer.committed_offsets(tpl, timeout))
            .await
            .map_err(|e| Error::Unavailable(e.to_string()))?
            .map_err(|e| Error::Unavailable(format!("committed offsets: {e}")))?;
        Ok(got
            .elements()
            .iter()
            .filter(|e| e.topic() == topic)
            .map(|e| match e.offset() {
                Offset::Offset(o) => (e.partition(), Some(o)),
                _ => (e.partition(), None),
            })
            .collect())
    }
}
