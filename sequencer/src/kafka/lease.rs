//! Leases: a name only one process holds at a time, e.g. a gateway's slot.
//!
//! A lease is a static member (`group.instance.id` = the name) of a consumer group of
//! the same name. When a second process takes the same lease, the group coordinator
//! gives the name to the newcomer and fences the earlier holder: its consumer gets a
//! fatal `FENCED_INSTANCE_ID` error at its next heartbeat, and its lease reports lost.
//! A process restarted after a crash takes its lease back at once (no session timeout
//! to wait for), and two processes started with the same name never both keep it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio::sync::watch;
use tracing::warn;

use super::config::KafkaConfig;
use super::errors::config as config_error;
use crate::error::{Error, Result};
use crate::log::Lease;

pub(crate) fn take(config: &KafkaConfig, name: &str, topic: &str) -> Result<Lease> {
    let mut c = config.group_consumer(name);
    c.set("group.instance.id", name)
        .set("auto.offset.reset", "latest");
    let consumer: BaseConsumer = c.create().map_err(config_error)?;
    consumer
        .subscribe(&[topic])
        .map_err(|e| Error::Unavailable(e.to_string()))?;
    let (lost_tx, lost_rx) = watch::channel(None);
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    let name = name.to_string();
    std::thread::Builder::new()
        .name(format!("lease-{name}"))
        .spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                // The group protocol (heartbeats, fencing) runs inside poll.
                let _ = consumer.poll(Duration::from_millis(200));
                if let Some((code, reason)) = consumer.client().fatal_error() {
                    warn!(lease = %name, ?code, reason, "lease lost: a newer holder fenced this one");
                    let _ = lost_tx.send(Some(format!("{reason} ({code:?})")));
                    return;
                }
            }
        })
        .map_err(|e| Error::Unavailable(e.to_string()))?;
    Ok(Lease::new(lost_rx, stop))
}
