//! The push role: notifications for users who are away.
//!
//! Fanout-workers write a `PushJob` to `push` (key = user) for each message routed to a
//! user with no live session (in large groups, only for mentions). This role reads them
//! as a consumer group and sends each user's devices one webhook per burst.
//!
//! Module map:
//! - `service.rs`: the group loop; the rules of what is not pushed; commits.
//! - `deliver.rs`: one notification to one device (retries, breaker, dead letters).
//! - `collapse.rs`: a conversation's jobs within a window become one notification.
//! - `devices.rs`: [`DeviceBook`], devices and mutes from the `devices` topic, and
//!   the writes the gateway makes for `/v1/devices` and `/mute`.
//! - `state.rs`: intents in `push-state`, so that a restart sends nothing twice under
//!   a new id.
//! - `payload.rs`: the JSON body (APNs/FCM-shaped) and its HMAC signature.
//! - `provider.rs`: the [`PushProvider`] seam and the webhook provider.
//! - `targets.rs`: [`WebhookTargets`], where webhooks may go (no loopback, private or
//!   metadata addresses), checked at registration and at connect time.
//! - `backoff.rs`, `breaker.rs`: retries with jitter, per-endpoint circuit breakers.

pub mod backoff;
pub mod breaker;
pub mod collapse;
mod config;
mod deliver;
pub mod devices;
pub mod payload;
pub mod provider;
mod service;
pub mod state;
pub mod targets;

pub use config::PushConfig;
pub use devices::{Device, DeviceBook};
pub use provider::{PushProvider, SendError, WebhookProvider};
pub use service::{run, Stats};
pub use targets::WebhookTargets;
