//! The Kafka backend of [`EventLog`], on rdkafka (librdkafka).
//!
//! - [`config`]: connection and tuning settings, with low-latency defaults.
//! - [`producer`]: appends (idempotent producer, acks=all, murmur2 partitioner).
//! - [`reader`]: partition streams from an offset, one assigned consumer per stream.
//! - [`admin`]: provisioning, description, metadata and end offsets.
//! - [`group`]: consumer-group membership with our own offset commits.
//! - [`loopback`]: this process's acknowledged appends, handed to its own readers of the
//!   same topic ahead of the broker's copy (`parley dev`).

pub mod admin;
pub mod config;
mod ends;
mod errors;
pub mod group;
mod lease;
pub mod loopback;
pub mod producer;
pub mod reader;

use std::sync::Arc;

use async_trait::async_trait;
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::BaseConsumer;

pub use config::KafkaConfig;
pub use loopback::LoopbackTopics;

use crate::error::Result;
use crate::log::{EventLog, Lease, Position, RecordStream, StartAt, Subscription};
use crate::topics::{TopicReport, TopicSpec};

/// A connection to a Kafka cluster: one producer, one admin client and one metadata
/// consumer, shared by every caller; readers get a consumer each.
#[derive(Clone)]
pub struct KafkaLog {
    inner: Arc<Inner>,
}

struct Inner {
    config: KafkaConfig,
    producer: producer::Producer,
    admin: AdminClient<DefaultClientContext>,
    meta: Arc<BaseConsumer>,
    ends: ends::EndOffsets,
    loopback: Arc<loopback::Loopback>,
}

impl KafkaLog {
    /// Connects and checks that a broker answers, so a wrong address fails now and clearly.
    pub async fn connect(config: KafkaConfig) -> Result<Self> {
        let loopback = Arc::new(loopback::Loopback::new(config.loopback.clone()));
        let producer = producer::create(&config, loopback.clone())?;
        let admin = admin::create(&config)?;
        let meta = Arc::new(admin::metadata_consumer(&config)?);
        let log = KafkaLog {
            inner: Arc::new(Inner {
                config,
                producer,
                admin,
                meta,
                ends: ends::EndOffsets::default(),
                loopback,
            }),
        };
        admin::check_reachable(&log.inner.meta, &log.inner.config).await?;
        Ok(log)
    }

    /// The leader (broker id) of each partition of `topic`, -1 where none leads: for
    /// fault tests that stop the busiest broker.
    pub async fn leaders(&self, topic: &str) -> Result<Vec<i32>> {
        admin::leaders(&self.inner.meta, &self.inner.config, topic).await
    }

    /// Waits until every queued append has been confirmed or failed.
    pub async fn flush(&self) -> Result<()> {
        producer::flush(&self.inner.producer, &self.inner.config).await
    }
}

#[async_trait]
impl EventLog for KafkaLog {
    async fn append(&self, topic: &str, key: &[u8], value: Option<&[u8]>) -> Result<Position> {
        producer::append(
            &self.inner.producer,
            &self.inner.config,
            topic,
            None,
            key,
            value,
        )
        .await
    }

    async fn append_to(
        &self,
        topic: &str,
        partition: i32,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<Position> {
        producer::append(
            &self.inner.producer,
            &self.inner.config,
            topic,
            Some(partition),
            key,
            value,
        )
        .await
    }

    fn start_append(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Option<crate::log::Appending> {
        producer::start(
            &self.inner.producer,
            &self.inner.config,
            topic,
            partition,
            key,
            value,
        )
    }

    async fn read(&self, topic: &str, from: &[(i32, StartAt)]) -> Result<RecordStream> {
        reader::read(&self.inner.config, &self.inner.meta, topic, from, false).await
    }

    async fn read_bulk(&self, topic: &str, from: &[(i32, StartAt)]) -> Result<RecordStream> {
        let Some(looped) = self.inner.loopback.topic(topic) else {
            return reader::read(&self.inner.config, &self.inner.meta, topic, from, true).await;
        };
        // The merge must know where the broker's reading starts: pinned to offsets here.
        let needs = |s: StartAt| from.iter().any(|(_, at)| *at == s);
        let ends = match needs(StartAt::End) {
            true => self.end_offsets(topic).await?,
            false => Vec::new(),
        };
        let oldest = match needs(StartAt::Beginning) {
            true => self.start_offsets(topic).await?,
            false => Vec::new(),
        };
        let mut merge = loopback::Merge::new(looped);
        let mut pinned = Vec::with_capacity(from.len());
        for &(p, at) in from {
            let known = match at {
                StartAt::Offset(o) => Some(o),
                StartAt::End => ends.get(p as usize).copied(),
                StartAt::Beginning => oldest.get(p as usize).copied(),
            };
            merge.add(p, known);
            pinned.push((p, known.map_or(at, StartAt::Offset)));
        }
        let inner =
            reader::read(&self.inner.config, &self.inner.meta, topic, &pinned, true).await?;
        Ok(loopback::stream(inner, merge))
    }

    async fn end_offsets(&self, topic: &str) -> Result<Vec<i64>> {
        let inner = &self.inner;
        inner
            .ends
            .read(topic, || {
                admin::end_offsets(&inner.meta, &inner.config, topic)
            })
            .await
    }

    async fn broker_count(&self) -> Result<usize> {
        admin::broker_count(&self.inner.meta, &self.inner.config).await
    }

    async fn start_offsets(&self, topic: &str) -> Result<Vec<i64>> {
        admin::start_offsets(&self.inner.meta, &self.inner.config, topic).await
    }

    async fn partition_count(&self, topic: &str) -> Result<i32> {
        admin::partition_count(&self.inner.meta, &self.inner.config, topic).await
    }

    async fn provision(&self, specs: &[TopicSpec]) -> Result<Vec<TopicReport>> {
        admin::provision(
            &self.inner.admin,
            &self.inner.meta,
            &self.inner.config,
            specs,
        )
        .await
    }

    async fn describe(&self, specs: &[TopicSpec]) -> Result<Vec<TopicReport>> {
        admin::describe(
            &self.inner.admin,
            &self.inner.meta,
            &self.inner.config,
            specs,
        )
        .await
    }

    async fn lease(&self, name: &str, topic: &str) -> Result<Lease> {
        lease::take(&self.inner.config, name, topic)
    }

    async fn subscribe(&self, group: &str, topic: &str) -> Result<Box<dyn Subscription>> {
        let member = Box::new(group::KafkaSubscription::new(
            &self.inner.config,
            group,
            topic,
        )?);
        let Some(looped) = self.inner.loopback.topic(topic) else {
            return Ok(member);
        };
        let (log, name) = (self.clone(), topic.to_string());
        let oldest: loopback::Starts = Box::new(move |parts: Vec<i32>| {
            let (log, name) = (log.clone(), name.clone());
            Box::pin(async move {
                let starts = log.start_offsets(&name).await.ok();
                parts
                    .into_iter()
                    .map(|p| (p, starts.as_ref().and_then(|s| s.get(p as usize).copied())))
                    .collect()
            })
        });
        Ok(Box::new(loopback::LoopbackSubscription::new(
            member, looped, oldest,
        )))
    }
}
