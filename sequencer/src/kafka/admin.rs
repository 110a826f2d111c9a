//! Provisioning, description, metadata and end offsets. librdkafka's metadata calls block,
//! so they run on the blocking pool.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use tracing::info;

use super::config::KafkaConfig;
use super::errors::config as config_error;
use crate::error::{Error, Result};
use crate::topics::{TopicReport, TopicSpec, TopicStatus};

pub(crate) fn create(config: &KafkaConfig) -> Result<AdminClient<DefaultClientContext>> {
    config.client("admin").create().map_err(config_error)
}

pub(crate) fn metadata_consumer(config: &KafkaConfig) -> Result<BaseConsumer> {
    config.consumer("meta").create().map_err(config_error)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Unavailable(format!("metadata task failed: {e}")))?
}

fn timeout(config: &KafkaConfig) -> Duration {
    Duration::from_millis(u64::from(config.request_timeout_ms))
}

pub(crate) async fn check_reachable(meta: &Arc<BaseConsumer>, config: &KafkaConfig) -> Result<()> {
    let (meta, t, bootstrap) = (meta.clone(), timeout(config), config.bootstrap.clone());
    blocking(move || {
        let md = meta.fetch_metadata(None, t).map_err(|e| {
            Error::Unavailable(format!(
                "no Kafka broker answered at {bootstrap} within {} ms ({e}); is it running? (scripts/kafka.sh start)",
                t.as_millis()
            ))
        })?;
        if md.brokers().is_empty() {
            return Err(Error::Unavailable(format!("{bootstrap} lists no brokers")));
        }
        Ok(())
    })
    .await
}

/// Partition counts of every existing topic.
async fn topic_partitions(
    meta: &Arc<BaseConsumer>,
    config: &KafkaConfig,
) -> Result<BTreeMap<String, i32>> {
    let (meta, t) = (meta.clone(), timeout(config));
    blocking(move || {
        let md = meta
            .fetch_metadata(None, t)
            .map_err(|e| Error::Unavailable(e.to_string()))?;
        Ok(md
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .map(|t| (t.name().to_string(), t.partitions().len() as i32))
            .collect())
    })
    .await
}

pub(crate) async fn partition_count(
    meta: &Arc<BaseConsumer>,
    config: &KafkaConfig,
    topic: &str,
) -> Result<i32> {
    let (meta, t, name) = (meta.clone(), timeout(config), topic.to_string());
    blocking(move || {
        let md = meta
            .fetch_metadata(Some(&name), t)
            .map_err(|e| Error::Unavailable(e.to_string()))?;
        match md.topics().first() {
            Some(tm) if tm.error().is_none() && !tm.partitions().is_empty() => {
                Ok(tm.partitions().len() as i32)
            }
            _ => Err(Error::UnknownTopic(name)),
        }
    })
    .await
}

/// The leader (broker id) of each partition of `topic`; -1 where none leads.
pub(crate) async fn leaders(
    meta: &Arc<BaseConsumer>,
    config: &KafkaConfig,
    topic: &str,
) -> Result<Vec<i32>> {
    let (meta, t, name) = (meta.clone(), timeout(config), topic.to_string());
    blocking(move || {
        let md = meta
            .fetch_metadata(Some(&name), t)
            .map_err(|e| Error::Unavailable(e.to_string()))?;
        let Some(tm) = md.topics().first().filter(|tm| tm.error().is_none()) else {
            return Err(Error::UnknownTopic(name));
        };
        let mut leaders: Vec<(i32, i32)> = tm
            .partitions()
            .iter()
            .map(|p| (p.id(), p.leader()))
            .collect();
        leaders.sort_unstable();
        Ok(leaders.into_iter().map(|(_, l)| l).collect())
    })
    .await
}

pub(crate) async fn broker_count(meta: &Arc<BaseConsumer>, config: &KafkaConfig) -> Result<usize> {
    let (meta, t) = (meta.clone(), timeout(config));
    blocking(move || {
        let md = meta
            .fetch_metadata(None, t)
            .map_err(|e| Error::Unavailable(e.to_string()))?;
        Ok(md.brokers().len())
    })
    .await
}

/// The first (`high` false) or next (`high` true) offset of every partition of `topic`:
/// one ListOffsets request per partition leader, not one or two per partition. An idle
/// process asks this every few seconds (lag gauges, readiness, the projector's rounds) and
/// every session asks it once (the read-your-log barrier), so with a request per
/// partition its round trips were most of what an idle deployment sent the broker.
async fn watermarks(
    meta: &Arc<BaseConsumer>,
    config: &KafkaConfig,
    topic: &str,
    high: bool,
) -> Result<Vec<i64>> {
    let n = partition_count(meta, config, topic).await?;
    let (meta, t, name) = (meta.clone(), timeout(config), topic.to_string());
    blocking(move || {
        let deadline = Instant::now() + t;
        let at = if high { Offset::End } else { Offset::Beginning };
        loop {
            match list_offsets(&meta, &name, n, at, t) {
                Ok(offsets) => return Ok(offsets),
                // A partition just created or moving has no leader for a moment.
                Err(e) if Instant::now() < deadline && is_transient(&e) => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(Error::Unavailable(format!("offsets of {name}: {e}"))),
            }
        }
    })
    .await
}

/// One round of [`watermarks`]: the broker's answer for partitions `0..n` of `topic`, in
/// partition order. `at` is `End` (the high watermark, as a reader that does not see
/// uncommitted transactions would) or `Beginning`.
fn list_offsets(
    meta: &BaseConsumer,
    topic: &str,
    n: i32,
    at: Offset,
    t: Duration,
) -> std::result::Result<Vec<i64>, rdkafka::error::KafkaError> {
    let mut asked = TopicPartitionList::with_capacity(n as usize);
    for p in 0..n {
        asked.add_partition_offset(topic, p, at)?;
    }
    let answer = meta.offsets_for_times(asked, t)?;
    let mut offsets = vec![None; n as usize];
    for e in answer.elements_for_topic(topic) {
        e.error()?;
        if let (Offset::Offset(o), Some(slot)) =
            (e.offset(), offsets.get_mut(e.partition() as usize))
        {
            *slot = Some(o);
        }
    }
    offsets
        .into_iter()
        .enumerate()
        .map(|(p, o)| {
            o.ok_or(rdkafka::error::KafkaError::MetadataFetch(
                RDKafkaErrorCode::UnknownPartition,
            ))
            .inspect_err(|_| tracing::debug!(topic, partition = p, "no offset in the answer"))
        })
        .collect()
}

pub(crate) async fn end_offsets(
    meta: &Arc<BaseConsumer>,
    config: &KafkaConfig,
    topic: &str,
) -> Result<Vec<i64>> {
    watermarks(meta, config, topic, true).await
}

pub(crate) async fn start_offsets(
    meta: &Arc<BaseConsumer>,
    config: &KafkaConfig,
    topic: &str,
) -> Result<Vec<i64>> {
    watermarks(meta, config, topic, false).await
}

/// Whether an offsets request may succeed if asked again: the partition has no leader
/// for a moment, or its new leader does not know the high watermark yet (Kafka answers
/// ListOffsets with OFFSET_NOT_AVAILABLE until the followers catch up after an election,
/// and librdkafka hands that answer back rather than retrying it).
fn is_transient(e: &rdkafka::error::KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::NotLeaderForPartition
                | C::LeaderNotAvailable
                | C::OffsetNotAvailable
                | C::FencedLeaderEpoch
                | C::UnknownLeaderEpoch
                | C::ReplicaNotAvailable
                | C::KafkaStorageError
                | C::UnknownTopic
                | C::UnknownPartition
                | C::UnknownTopicOrPartition
                | C::BrokerNotAvailable
                | C::NotCoordinator
                | C::RequestTimedOut
                | C::OperationTimedOut
                | C::BrokerTransportFailure
                | C::AllBrokersDown
        )
    )
}

/// Whether every partition of each of `topics` has a leader.
async fn leaders_elected(
    meta: &Arc<BaseConsumer>,
    config: &KafkaConfig,
    topics: Vec<String>,
) -> Result<bool> {
    let (meta, t) = (meta.clone(), timeout(config));
    blocking(move || {
        let md = meta
            .fetch_metadata(None, t)
            .map_err(|e| Error::Unavailable(e.to_string()))?;
        Ok(topics.iter().all(|name| {
            md.topics().iter().any(|tm| {
                tm.name() == name
                    && tm.error().is_none()
                    && !tm.partitions().is_empty()
                    && tm
                        .partitions()
                        .iter()
                        .all(|p| p.error().is_none() && p.leader() >= 0)
            })
        }))
    })
    .await
}

async fn topic_configs(
    admin: &AdminClient<DefaultClientContext>,
    config: &KafkaConfig,
    name: &str,
) -> Result<BTreeMap<String, String>> {
    let opts = AdminOptions::new().request_timeout(Some(timeout(config)));
    let results = admin
        .describe_configs([&ResourceSpecifier::Topic(name)], &opts)
        .await
        .map_err(|e| Error::Unavailable(e.to_string()))?;
    let resource = results
        .into_iter()
        .next()
        .ok_or_else(|| Error::Unavailable(format!("no configs returned for {name}")))?
        .map_err(|code| Error::Unavailable(format!("describing {name}: {code}")))?;
    Ok(resource
        .entries
        .into_iter()
        .filter_map(|e| e.value.map(|v| (e.name, v)))
        .collect())
}

pub(crate) async fn describe(
    admin: &AdminClient<DefaultClientContext>,
    meta: &Arc<BaseConsumer>,
    config: &KafkaConfig,
    specs: &[TopicSpec],
) -> Result<Vec<TopicReport>> {
    let existing = topic_partitions(meta, config).await?;
    let mut reports = Vec::with_capacity(specs.len());
    for spec in specs {
        reports.push(match existing.get(&spec.name) {
            None => TopicReport {
                spec: spec.clone(),
                partitions: None,
                status: TopicStatus::Missing,
            },
            Some(&n) => {
                let configs = topic_configs(admin, config, &spec.name).await?;
                TopicReport::compare(spec, n, &configs)
            }
        });
    }
    Ok(reports)
}

pub(crate) async fn provision(
    admin: &AdminClient<DefaultClientContext>,
    meta: &Arc<BaseConsumer>,
    config: &KafkaConfig,
    specs: &[TopicSpec],
) -> Result<Vec<TopicReport>> {
    let mut reports = describe(admin, meta, config, specs).await?;
    let missing: Vec<&TopicSpec> = reports
        .iter()
        .filter(|r| r.status == TopicStatus::Missing)
        .map(|r| &r.spec)
        .collect();
    if missing.is_empty() {
        return Ok(reports);
    }
    let new_topics: Vec<NewTopic<'_>> = missing
        .iter()
        .map(|s| {
            let mut t = NewTopic::new(
                &s.name,
                s.partitions,
                TopicReplication::Fixed(i32::from(s.replication_factor)),
            );
            for (k, v) in &s.configs {
                t = t.set(k, v);
            }
            t
        })
        .collect();
    let opts = AdminOptions::new()
        .request_timeout(Some(timeout(config)))
        .operation_timeout(Some(timeout(config)));
    let results = admin
        .create_topics(new_topics.iter(), &opts)
        .await
        .map_err(|e| Error::Unavailable(e.to_string()))?;
    let mut created = Vec::new();
    for r in results {
        match r {
            Ok(name) => {
                info!(topic = %name, "topic created");
                created.push(name);
            }
            // Someone else created it meanwhile: compare it like any existing topic.
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(Error::Config(format!("creating topic {name}: {code}")));
            }
        }
    }
    wait_visible(meta, config, specs).await?;
    // On a cluster, the broker that answers may not have a new topic's configs yet:
    // ask again (bounded) until the topics just created show them.
    let deadline = Instant::now() + Duration::from_secs(15);
    let fresh = loop {
        let fresh = describe(admin, meta, config, specs).await?;
        let settled = fresh
            .iter()
            .filter(|r| created.contains(&r.spec.name))
            .all(|r| r.status == TopicStatus::Matches);
        if settled || Instant::now() >= deadline {
            break fresh;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for (report, now) in reports.iter_mut().zip(fresh) {
        *report = now;
        if created.contains(&report.spec.name) && report.status == TopicStatus::Matches {
            report.status = TopicStatus::Created;
        }
    }
    Ok(reports)
}

/// Waits until every partition of every topic has a leader, so that appends and reads
/// made right after provisioning find them.
async fn wait_visible(
    meta: &Arc<BaseConsumer>,
    config: &KafkaConfig,
    specs: &[TopicSpec],
) -> Result<()> {
    let deadline = Instant::now() + timeout(config);
    let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
    loop {
        if leaders_elected(meta, config, names.clone()).await? {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Unavailable(format!(
                "created topics did not get partition leaders within {} ms; a broker \
                 that has just started may still be loading the partitions it holds: \
                 try again once it has",
                timeout(config).as_millis()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode as C};

    use super::is_transient;

    /// A partition's answer in an offsets request arrives as `OffsetFetch(code)`; those
    /// Kafka gives while a leader changes are asked again, and a refusal is not.
    #[test]
    fn answers_during_a_leader_change_are_asked_again() {
        for code in [
            C::OffsetNotAvailable,
            C::FencedLeaderEpoch,
            C::UnknownLeaderEpoch,
            C::ReplicaNotAvailable,
            C::KafkaStorageError,
            C::NotLeaderForPartition,
            C::LeaderNotAvailable,
        ] {
            assert!(is_transient(&KafkaError::OffsetFetch(code)), "{code:?}");
        }
        for code in [C::TopicAuthorizationFailed, C::InvalidRequest] {
            assert!(!is_transient(&KafkaError::OffsetFetch(code)), "{code:?}");
        }
    }
}
