//! How librdkafka's errors map onto [`Error`].

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::error::Error;

pub(crate) fn classify(e: &KafkaError, topic: &str, timeout_ms: u32) -> Error {
    match e.rdkafka_error_code() {
        Some(RDKafkaErrorCode::MessageTimedOut) => Error::Timeout(u64::from(timeout_ms)),
        Some(RDKafkaErrorCode::UnknownTopicOrPartition) | Some(RDKafkaErrorCode::UnknownTopic) => {
            Error::UnknownTopic(topic.to_string())
        }
        Some(RDKafkaErrorCode::UnknownPartition) => Error::UnknownPartition {
            topic: topic.to_string(),
            partition: -1,
        },
        Some(RDKafkaErrorCode::MessageSizeTooLarge)
        | Some(RDKafkaErrorCode::InvalidMessage)
        | Some(RDKafkaErrorCode::InvalidRecord)
        | Some(RDKafkaErrorCode::InvalidMessageSize) => Error::Rejected(e.to_string()),
        _ => Error::Unavailable(e.to_string()),
    }
}

pub(crate) fn config(e: KafkaError) -> Error {
    Error::Config(e.to_string())
}
