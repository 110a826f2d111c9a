//! What a gateway needs to know.

use std::time::Duration;

use parley_sequencer::TopicNames;

#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// This gateway's slot: its partition of `deliveries`.
    pub gateway_id: i32,
    pub topics: TopicNames,
    /// HS256 secret of client tokens.
    pub jwt_secret: String,
    /// Serve `POST /v1/dev/token` (never in production).
    pub dev_auth: bool,
    /// How often presence is refreshed.
    pub heartbeat: Duration,
    /// How long a presence record lasts without a refresh.
    pub presence_ttl: Duration,
    /// How long a new session waits for fanout-workers to acknowledge its presence.
    pub ack_timeout: Duration,
    /// How long a sync (or a long poll) waits for the session's presence to be
    /// acknowledged, and for the projector to reach the log's end offsets.
    pub sync_wait: Duration,
    /// How long a long-poll user still counts as online after a poll returns.
    pub poll_linger: Duration,
    /// Frames queued for one session before it counts as too slow and is cut off.
    pub session_queue: usize,
    /// Largest client frame or request body, in bytes.
    pub max_frame_bytes: usize,
    /// Longest message body, in characters.
    pub max_body_chars: usize,
    /// Messages per `sync_batch` frame (1 to [`crate::sync::PAGE`]): smaller pages keep a
    /// slow link's frames small.
    pub sync_page: u32,
    /// How often the gateway pings each WebSocket.
    pub ping_interval: Duration,
    /// A WebSocket that sends nothing (not even a pong) for this long is closed as dead.
    pub idle_timeout: Duration,
    /// A write to a WebSocket that takes longer than this closes it as stuck.
    pub write_timeout: Duration,
    /// How often a large group's members here get its receipt counts, at most.
    pub receipt_counts_every: Duration,
    /// Members of groups up to this size get each other's `presence` frames; larger
    /// groups' members ask with `presence_query`.
    pub presence_group_limit: usize,
    /// How often contacts' presence changes are looked up and sent (at most one frame
    /// per contact per interval).
    pub presence_every: Duration,
    /// Where push webhooks may point (checked when a device is registered).
    pub webhook_targets: parley_push::WebhookTargets,
    /// Rate limits and the frames a session may have in progress.
    pub limits: crate::limits::RateConfig,
    /// The readiness checks `/readyz` answers from (shared with other roles of the
    /// process in `parley dev`).
    pub health: parley_ops::Health,
    /// The views count as caught up (for `/readyz`) within this many records of the
    /// end of every partition of `events`.
    pub ready_lag: i64,
    /// Where attachments are stored; `None`: uploads answer `unavailable`.
    pub attachments: Option<crate::attachments::Blobs>,
    pub attachment_limits: crate::attachments::AttachmentLimits,
    /// How often gateway 0 sweeps the attachment store.
    pub attachment_sweep: Duration,
    /// The key-encryption key (`PARLEY_KEK`): with one, every message body is sealed
    /// before it is appended (`parley_keys`); without, bodies are plain text.
    pub kek: Option<parley_schemas::sealed::Kek>,
    /// The operators' service token: it may erase any user's content.
    pub service_token: Option<String>,
}

impl GatewayConfig {
    pub fn new(gateway_id: i32, topics: TopicNames, jwt_secret: impl Into<String>) -> Self {
        GatewayConfig {
            gateway_id,
            topics,
            jwt_secret: jwt_secret.into(),
            dev_auth: false,
            heartbeat: Duration::from_secs(10),
            presence_ttl: Duration::from_secs(30),
            ack_timeout: Duration::from_secs(5),
            sync_wait: Duration::from_secs(15),
            poll_linger: Duration::from_secs(30),
            session_queue: 1024,
            max_frame_bytes: 64 * 1024,
            max_body_chars: 16 * 1024,
            sync_page: crate::sync::PAGE,
            ping_interval: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(45),
            write_timeout: Duration::from_secs(10),
            receipt_counts_every: Duration::from_secs(2),
            presence_group_limit: 50,
            presence_every: Duration::from_millis(500),
            webhook_targets: parley_push::WebhookTargets::default(),
            limits: crate::limits::RateConfig::default(),
            health: parley_ops::Health::default(),
            ready_lag: 1_000,
            attachments: None,
            attachment_limits: crate::attachments::AttachmentLimits::default(),
            attachment_sweep: crate::attachments::sweeper::EVERY,
            kek: None,
            service_token: None,
        }
    }
}
