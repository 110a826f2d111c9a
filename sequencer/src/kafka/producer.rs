//! Appends. The idempotent producer (acks=all) confirms a record only once every in-sync
//! replica has it; [`append`] returns its position only after that confirmation.

use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;

use super::config::KafkaConfig;
use super::errors::{classify, config as config_error};
use crate::error::{Error, Result};
use crate::log::Position;

pub(crate) fn create(config: &KafkaConfig) -> Result<FutureProducer> {
    config.producer().create().map_err(config_error)
}

pub(crate) async fn append(
    producer: &FutureProducer,
    config: &KafkaConfig,
    topic: &str,
    partition: Option<i32>,
    key: &[u8],
    value: Option<&[u8]>,
) -> Result<Position> {
    // The wait for queue space counts against the same budget as the delivery itself.
    let queue_wait = Timeout::After(Duration::from_millis(u64::from(config.delivery_timeout_ms)));
    let began = std::time::Instant::now();
    let sent = producer
        .send(record(topic, partition, key, value), queue_wait)
        .await;
    observe(topic, began);
    match sent {
        Ok(d) => Ok(Position {
            partition: d.partition,
            offset: d.offset,
        }),
        Err((e, _)) => Err(error_of(&e, topic, partition, config)),
    }
}

/// `parley_append_seconds{topic}`: an append until the broker acknowledged it (the name
/// is `parley_ops::metrics::APPEND_SECONDS`; this crate is below that one).
fn observe(topic: &str, began: std::time::Instant) {
    metrics::histogram!("parley_append_seconds", "topic" => topic.to_string())
        .record(began.elapsed().as_secs_f64());
}

fn record<'a>(
    topic: &'a str,
    partition: Option<i32>,
    key: &'a [u8],
    value: Option<&'a [u8]>,
) -> FutureRecord<'a, [u8], [u8]> {
    let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).key(key);
    if let Some(v) = value {
        record = record.payload(v);
    }
    if let Some(p) = partition {
        record = record.partition(p);
    }
    record
}

/// The error of a failed delivery, naming the partition the caller chose.
fn error_of(e: &KafkaError, topic: &str, partition: Option<i32>, config: &KafkaConfig) -> Error {
    match (classify(e, topic, config.delivery_timeout_ms), partition) {
        (Error::UnknownPartition { topic, .. }, Some(p)) => Error::UnknownPartition {
            topic,
            partition: p,
        },
        (err, _) => err,
    }
}

/// Enqueues a record now; its delivery resolves later. `None` if the producer does not
/// take it now (a full queue, or a record it refuses before sending: the caller's
/// awaited append then reports why).
pub(crate) fn start(
    producer: &FutureProducer,
    config: &KafkaConfig,
    topic: &str,
    partition: Option<i32>,
    key: &[u8],
    value: Option<&[u8]>,
) -> Option<crate::log::Appending> {
    let delivery = producer
        .send_result(record(topic, partition, key, value))
        .ok()?;
    let (topic, config) = (topic.to_string(), config.clone());
    let began = std::time::Instant::now();
    Some(Box::pin(async move {
        let delivered = delivery.await;
        observe(&topic, began);
        match delivered {
            Ok(Ok(d)) => Ok(Position {
                partition: d.partition,
                offset: d.offset,
            }),
            Ok(Err((e, _))) => Err(error_of(&e, &topic, partition, &config)),
            Err(_) => Err(Error::Unavailable("the producer dropped the record".into())),
        }
    }))
}

pub(crate) async fn flush(producer: &FutureProducer, config: &KafkaConfig) -> Result<()> {
    let producer = producer.clone();
    let timeout = Duration::from_millis(u64::from(config.delivery_timeout_ms));
    tokio::task::spawn_blocking(move || producer.flush(timeout))
        .await
        .map_err(|e| Error::Unavailable(e.to_string()))?
        .map_err(|e| Error::Unavailable(e.to_string()))
}
