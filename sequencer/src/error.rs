//! The one error type of the log.

/// What can go wrong talking to the log.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The log cannot be reached or did not confirm in time; the record may or may not
    /// have been written. A retry with the same idempotency key is safe.
    #[error("log unavailable: {0}")]
    Unavailable(String),
    /// The append was not confirmed within the delivery timeout.
    #[error("append not confirmed within {0} ms")]
    Timeout(u64),
    #[error("topic {0} does not exist (run `parley topics create`)")]
    UnknownTopic(String),
    #[error("partition {partition} of {topic} does not exist")]
    UnknownPartition { topic: String, partition: i32 },
    /// The log refused the record itself (too large, invalid); retrying will not help.
    #[error("record rejected: {0}")]
    Rejected(String),
    #[error("invalid log configuration: {0}")]
    Config(String),
    #[error("topic {topic} does not match the spec: {problems}")]
    Mismatch { topic: String, problems: String },
}

impl Error {
    /// Whether the same operation may succeed if tried again later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Unavailable(_) | Error::Timeout(_))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
