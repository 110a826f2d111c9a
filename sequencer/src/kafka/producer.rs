//! Appends. The idempotent producer (acks=all) confirms a record only once every in-sync
//! replica has it; [`append`] returns its position only after that confirmation.
//!
//! [`Producer`] is rdkafka's `BaseProducer` with a thread of its own that serves the
//! delivery reports, as rdkafka's `FutureProducer` is. That one's thread waits 100 ms at
//! a time and, rounding the last part of each wait down to 0 ms, spins for up to a
//! millisecond before the next: about 1% of a core in every idle process. This one waits
//! a second at a time, and the spin that remains is a thousandth of its time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _, ProducerContext};
use tokio::sync::oneshot;

use super::config::KafkaConfig;
use super::errors::{classify, config as config_error};
use super::loopback::Loopback;
use crate::error::{Error, Result};
use crate::log::Position;

/// How long the delivery-report thread waits for a report before it checks whether the
/// producer was dropped: how long a dropped producer lingers, and one wake-up per
/// period while idle.
const REPORT_WAIT: Duration = Duration::from_secs(1);

/// A record's delivery: where it landed, or why it did not.
type Delivered = std::result::Result<(i32, i64), KafkaError>;

/// A record on its way, carrying the sender its append waits on.
type Outgoing<'a> = BaseRecord<'a, [u8], [u8], Box<oneshot::Sender<Delivered>>>;

/// Hands each delivery report to the append waiting for it, and each acknowledged
/// record of a looped-back topic to the loopback.
struct Reports {
    loopback: Arc<Loopback>,
}

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = Box<oneshot::Sender<Delivered>>;

    fn delivery(&self, result: &DeliveryResult<'_>, waiter: Self::DeliveryOpaque) {
        use rdkafka::Message as _;
        let delivered = match result {
            Ok(m) => {
                if self.loopback.covers(m.topic()) {
                    self.loopback.put(super::reader::to_record(m));
                }
                Ok((m.partition(), m.offset()))
            }
            Err((e, _)) => Err(e.clone()),
        };
        // An append dropped before its record was confirmed no longer waits: nothing to do.
        let _ = waiter.send(delivered);
    }
}

/// The process's producer, shared by every append (`KafkaLog` holds one). Dropping it
/// stops its delivery-report thread within [`REPORT_WAIT`].
pub(crate) struct Producer {
    base: Arc<BaseProducer<Reports>>,
    stop: Arc<AtomicBool>,
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

pub(crate) fn create(config: &KafkaConfig, loopback: Arc<Loopback>) -> Result<Producer> {
    let base: Arc<BaseProducer<Reports>> = Arc::new(
        config
            .producer()
            .create_with_context(Reports { loopback })
            .map_err(config_error)?,
    );
    let stop = Arc::new(AtomicBool::new(false));
    let (serving, stopped) = (base.clone(), stop.clone());
    std::thread::Builder::new()
        .name("kafka-reports".into())
        .spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                serving.poll(REPORT_WAIT);
            }
        })
        .map_err(|e| Error::Unavailable(format!("cannot start the producer's thread: {e}")))?;
    Ok(Producer { base, stop })
}

pub(crate) async fn append(
    producer: &Producer,
    config: &KafkaConfig,
    topic: &str,
    partition: Option<i32>,
    key: &[u8],
    value: Option<&[u8]>,
) -> Result<Position> {
    // The wait for queue space counts against the same budget as the delivery itself.
    let began = Instant::now();
    let deadline = began + Duration::from_millis(u64::from(config.delivery_timeout_ms));
    let (tx, rx) = oneshot::channel();
    let mut next = record(topic, partition, key, value, tx);
    let delivered = loop {
        match producer.base.send(next) {
            Ok(()) => break rx.await,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                if Instant::now() < deadline =>
            {
                next = back;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err((e, _)) => break Ok(Err(e)),
        }
    };
    observe(topic, began);
    position(delivered, topic, partition, config)
}

/// An append's outcome: its position, or the error naming the partition the caller chose.
fn position(
    delivered: std::result::Result<Delivered, oneshot::error::RecvError>,
    topic: &str,
    partition: Option<i32>,
    config: &KafkaConfig,
) -> Result<Position> {
    match delivered {
        Ok(Ok((partition, offset))) => Ok(Position { partition, offset }),
        Ok(Err(e)) => Err(error_of(&e, topic, partition, config)),
        Err(_) => Err(Error::Unavailable("the producer dropped the record".into())),
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
    waiter: oneshot::Sender<Delivered>,
) -> Outgoing<'a> {
    let mut record = BaseRecord::with_opaque_to(topic, Box::new(waiter)).key(key);
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
    producer: &Producer,
    config: &KafkaConfig,
    topic: &str,
    partition: Option<i32>,
    key: &[u8],
    value: Option<&[u8]>,
) -> Option<crate::log::Appending> {
    let (tx, rx) = oneshot::channel();
    producer
        .base
        .send(record(topic, partition, key, value, tx))
        .ok()?;
    let (topic, config) = (topic.to_string(), config.clone());
    let began = Instant::now();
    Some(Box::pin(async move {
        let delivered = rx.await;
        observe(&topic, began);
        position(delivered, &topic, partition, &config)
    }))
}

pub(crate) async fn flush(producer: &Producer, config: &KafkaConfig) -> Result<()> {
    let base = producer.base.clone();
    let timeout = Duration::from_millis(u64::from(config.delivery_timeout_ms));
    tokio::task::spawn_blocking(move || base.flush(timeout))
        .await
        .map_err(|e| Error::Unavailable(e.to_string()))?
        .map_err(|e| Error::Unavailable(e.to_string()))
}
