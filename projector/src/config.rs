//! What a projector needs to know.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct ProjectorConfig {
    /// Where the RocksDB database lives.
    pub data_dir: PathBuf,
    /// The `events` topic.
    pub events_topic: String,
    /// Partitions of `events` this projector owns; `None` means all.
    pub partitions: Option<Vec<i32>>,
    /// Most records applied in one write batch.
    pub batch_max: usize,
    /// Sleep before each batch: a deliberately slow projector, for tests of the
    /// read-your-log barrier. Zero in production.
    pub apply_delay: Duration,
}

impl ProjectorConfig {
    pub fn new(data_dir: impl Into<PathBuf>, events_topic: impl Into<String>) -> Self {
        ProjectorConfig {
            data_dir: data_dir.into(),
            events_topic: events_topic.into(),
            partitions: None,
            batch_max: 1000,
            apply_delay: Duration::ZERO,
        }
    }
}
