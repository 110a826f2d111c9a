//! Partition streams. Each [`read`] gets its own consumer, assigned (not subscribed) to
//! the requested partitions at the requested offsets, feeding a bounded channel. Dropping
//! the stream stops the consumer.

use std::sync::Arc;

use bytes::Bytes;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tracing::{debug, warn};

use super::config::KafkaConfig;
use super::errors::config as config_error;
use crate::error::{Error, Result};
use crate::log::{LogRecord, RecordStream, StartAt};

pub(crate) async fn read(
    config: &KafkaConfig,
    meta: &Arc<BaseConsumer>,
    topic: &str,
    from: &[(i32, StartAt)],
    bulk: bool,
) -> Result<RecordStream> {
    // librdkafka resolves "end" only when it first fetches, which may be well after this
    // call: pin it now, so that nothing appended after `read` returns is skipped.
    let ends = if from.iter().any(|(_, s)| *s == StartAt::End) {
        super::admin::end_offsets(meta, config, topic).await?
    } else {
        Vec::new()
    };
    let settings = match bulk {
        true => config.bulk_of(topic, config.consumer("reader")),
        false => config.consumer("reader"),
    };
    let consumer: StreamConsumer = settings.create().map_err(config_error)?;
    let mut tpl = TopicPartitionList::new();
    for &(partition, start) in from {
        let offset = match start {
            StartAt::Beginning => Offset::Beginning,
            StartAt::End => match ends.get(partition as usize) {
                Some(&end) => Offset::Offset(end),
                None => Offset::End,
            },
            StartAt::Offset(o) => Offset::Offset(o),
        };
        tpl.add_partition_offset(topic, partition, offset)
            .map_err(|e| Error::Config(e.to_string()))?;
    }
    consumer.assign(&tpl).map_err(config_error)?;

    let (tx, rx) = mpsc::channel(config.read_buffer.max(1));
    let topic = topic.to_string();
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                _ = tx.closed() => break,
                next = consumer.recv() => next,
            };
            let item = match next {
                Ok(m) => Ok(to_record(&m)),
                Err(e) if is_fatal(&e) => Err(Error::Unavailable(e.to_string())),
                Err(e) => {
                    // Broker transport errors and the like: librdkafka reconnects by itself.
                    warn!(topic = %topic, error = %e, "reader error; retrying");
                    continue;
                }
            };
            let fatal = item.is_err();
            if tx.send(item).await.is_err() || fatal {
                break;
            }
        }
        debug!(topic = %topic, "reader stopped");
    });
    Ok(Box::pin(ReceiverStream::new(rx)))
}

/// A record as the rest of Parley sees it (copied out of librdkafka's buffer).
pub(crate) fn to_record<M: Message>(m: &M) -> LogRecord {
    LogRecord {
        topic: m.topic().to_string(),
        partition: m.partition(),
        offset: m.offset(),
        timestamp_ms: m.timestamp().to_millis(),
        key: m.key().map(Bytes::copy_from_slice),
        value: m.payload().map(Bytes::copy_from_slice),
    }
}

fn is_fatal(e: &KafkaError) -> bool {
    use rdkafka::error::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::UnknownTopicOrPartition
                | C::UnknownTopic
                | C::UnknownPartition
                | C::Fatal
                | C::TopicAuthorizationFailed
        )
    )
}
