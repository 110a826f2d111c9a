//! Settings of the Kafka backend. The defaults favour latency: a chat message should not
//! wait in a batch.

use rdkafka::ClientConfig;

use super::loopback::LoopbackTopics;

/// `fetch.min.bytes` of a reader whose topic is looped: the broker holds its fetch until
/// this much waits or `loopback_fetch_wait_ms` has passed.
pub const LOOPBACK_FETCH_BYTES: u32 = 1 << 20;

#[derive(Clone, Debug)]
pub struct KafkaConfig {
    /// `host:port[,host:port…]`.
    pub bootstrap: String,
    /// Producer `linger.ms`: how long an append may wait to share a batch.
    pub linger_ms: u32,
    /// Consumer `fetch.wait.max.ms`: how long the broker may hold a fetch for new data.
    pub fetch_wait_ms: u32,
    /// Bulk readers (consumer groups and [`crate::EventLog::read_bulk`]): the broker
    /// answers their fetch once this many bytes wait (`fetch.min.bytes`), or after
    /// `bulk_fetch_wait_ms`. 0: off, they fetch as every other reader does.
    pub bulk_fetch_bytes: u32,
    /// Bulk readers' `fetch.wait.max.ms` while `bulk_fetch_bytes` is on.
    pub bulk_fetch_wait_ms: u32,
    /// Topics whose appends this process hands to its own bulk readers and group members
    /// once the broker has acknowledged them (`super::loopback`), ahead of the broker's copy.
    pub loopback: LoopbackTopics,
    /// `fetch.wait.max.ms` of the bulk readers and group members of looped-back topics, which
    /// then fetch only what other processes append (or the loopback no longer holds): how
    /// late those records may be, and, while idle, one fetch per wait.
    pub loopback_fetch_wait_ms: u32,
    /// Producer `compression.type`: `none`, `gzip`, `snappy`, `lz4` or `zstd`.
    pub compression: String,
    /// Producer `message.timeout.ms`: an append not confirmed by then fails.
    pub delivery_timeout_ms: u32,
    /// Timeout of metadata and admin requests.
    pub request_timeout_ms: u32,
    /// Records a reader buffers ahead of its consumer.
    pub read_buffer: usize,
    /// Prefix of the client ids this process shows to the broker.
    pub client_id: String,
    /// Consumer-group session timeout: how soon a dead member's partitions move (ms).
    pub session_timeout_ms: u32,
    /// How long a member may go without asking for records before the group takes
    /// its partitions away (ms; librdkafka's `max.poll.interval.ms`).
    pub max_poll_interval_ms: u32,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            bootstrap: "127.0.0.1:9092".into(),
            linger_ms: 0,
            fetch_wait_ms: 500,
            bulk_fetch_bytes: 0,
            bulk_fetch_wait_ms: 5,
            loopback: LoopbackTopics::Off,
            loopback_fetch_wait_ms: 250,
            compression: "none".into(),
            delivery_timeout_ms: 10_000,
            request_timeout_ms: 10_000,
            read_buffer: 1024,
            client_id: "parley".into(),
            session_timeout_ms: 10_000,
            max_poll_interval_ms: 300_000,
        }
    }
}

impl KafkaConfig {
    pub fn with_bootstrap(bootstrap: impl Into<String>) -> Self {
        KafkaConfig {
            bootstrap: bootstrap.into(),
            ..Default::default()
        }
    }

    /// Settings every client shares.
    pub(crate) fn client(&self, role: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap)
            .set("client.id", format!("{}-{role}", self.client_id))
            .set("socket.nagle.disable", "true")
            .set("log_level", "4");
        c
    }

    pub(crate) fn producer(&self) -> ClientConfig {
        let mut c = self.client("producer");
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("partitioner", "murmur2_random")
            .set("linger.ms", self.linger_ms.to_string())
            .set("message.timeout.ms", self.delivery_timeout_ms.to_string())
            .set("queue.buffering.max.messages", "200000")
            .set("queue.buffering.max.kbytes", "262144")
            .set("compression.type", &self.compression);
        c
    }

    pub(crate) fn consumer(&self, role: &str) -> ClientConfig {
        let mut c = self.client(role);
        // Readers assign partitions themselves and never commit: no group is joined.
        c.set("group.id", format!("{}-{role}-unused", self.client_id))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", self.fetch_wait_ms.to_string())
            .set("fetch.min.bytes", "1")
            .set("isolation.level", "read_uncommitted");
        c
    }

    /// `c` as a reader of records every message passes, which may wait for them in bulk:
    /// with `bulk_fetch_bytes` on, the broker answers its fetch once that many bytes
    /// wait or after `bulk_fetch_wait_ms`, so under load one fetch carries many records.
    pub(crate) fn bulk(&self, mut c: ClientConfig) -> ClientConfig {
        if self.bulk_fetch_bytes > 0 {
            c.set("fetch.min.bytes", self.bulk_fetch_bytes.to_string())
                .set(
                    "fetch.wait.max.ms",
                    self.bulk_fetch_wait_ms.max(1).to_string(),
                );
        }
        c
    }

    /// `c` as a bulk reader (see [`KafkaConfig::bulk`]) of `topic`. A reader of a
    /// looped-back topic takes most records from the loopback: it fetches in large,
    /// late batches.
    pub(crate) fn bulk_of(&self, topic: &str, mut c: ClientConfig) -> ClientConfig {
        if !self.loopback.covers(topic) {
            return self.bulk(c);
        }
        c.set("fetch.min.bytes", LOOPBACK_FETCH_BYTES.to_string())
            .set(
                "fetch.wait.max.ms",
                self.loopback_fetch_wait_ms.max(1).to_string(),
            );
        c
    }

    pub(crate) fn group_consumer(&self, group: &str) -> ClientConfig {
        let mut c = self.consumer("group");
        c.set("group.id", group)
            .set("session.timeout.ms", self.session_timeout_ms.to_string())
            .set(
                "max.poll.interval.ms",
                self.max_poll_interval_ms
                    .max(self.session_timeout_ms)
                    .to_string(),
            )
            .set(
                "heartbeat.interval.ms",
                (self.session_timeout_ms / 5).max(100).to_string(),
            )
            .set("partition.assignment.strategy", "cooperative-sticky");
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetch(c: &ClientConfig) -> (Option<&str>, Option<&str>) {
        (c.get("fetch.min.bytes"), c.get("fetch.wait.max.ms"))
    }

    #[test]
    fn bulk_fetches_are_off_by_default() {
        let config = KafkaConfig::default();
        assert_eq!(
            fetch(&config.bulk(config.consumer("reader"))),
            (Some("1"), Some("500"))
        );
        assert_eq!(
            fetch(&config.bulk(config.group_consumer("g"))),
            (Some("1"), Some("500"))
        );
    }

    #[test]
    fn bulk_fetches_reach_bulk_readers_only() {
        let config = KafkaConfig {
            bulk_fetch_bytes: 16_384,
            bulk_fetch_wait_ms: 5,
            ..KafkaConfig::default()
        };
        assert_eq!(
            fetch(&config.bulk(config.consumer("reader"))),
            (Some("16384"), Some("5"))
        );
        assert_eq!(
            fetch(&config.bulk(config.group_consumer("g"))),
            (Some("16384"), Some("5"))
        );
        // Other readers (presence, signals, a gateway's slot) and leases, which hold a
        // group without reading, answer at once and ask once per fetch wait when idle.
        assert_eq!(fetch(&config.consumer("reader")), (Some("1"), Some("500")));
        assert_eq!(
            fetch(&config.group_consumer("lease")),
            (Some("1"), Some("500"))
        );
    }

    #[test]
    fn readers_of_looped_back_topics_fetch_late_and_much() {
        let config = KafkaConfig {
            bulk_fetch_bytes: 16_384,
            loopback: LoopbackTopics::Only(vec!["events".into()]),
            loopback_fetch_wait_ms: 250,
            ..KafkaConfig::default()
        };
        assert_eq!(
            fetch(&config.bulk_of("events", config.group_consumer("g"))),
            (Some("1048576"), Some("250"))
        );
        assert_eq!(
            fetch(&config.bulk_of("push", config.group_consumer("g"))),
            (Some("16384"), Some("5"))
        );
    }
}
