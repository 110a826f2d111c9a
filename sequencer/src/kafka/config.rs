//! Settings of the Kafka backend. The defaults favour latency: a chat message should not
//! wait in a batch.

use rdkafka::ClientConfig;

#[derive(Clone, Debug)]
pub struct KafkaConfig {
    /// `host:port[,host:port…]`.
    pub bootstrap: String,
    /// Producer `linger.ms`: how long an append may wait to share a batch.
    pub linger_ms: u32,
    /// Consumer `fetch.wait.max.ms`: how long the broker may hold a fetch for new data.
    pub fetch_wait_ms: u32,
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
