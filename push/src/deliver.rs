//! One notification to one device: the provider's send, retried with backoff through
//! the endpoint's circuit breaker; what cannot be sent ends in the dead-letter topic,
//! with a WARN line and the `dead_lettered` counter.
//!
//! A delivery holds a permit only while its request is in flight: first one of its
//! user's ([`crate::PushConfig::per_user_in_flight`]), then one of the role's
//! ([`crate::PushConfig::in_flight`]). Waiting on an open circuit or a backoff holds
//! none, so one user's dead endpoints cannot take every permit and stall everyone
//! else's pushes.

use std::time::{Duration, Instant};

use parley_schemas::{encode, DeadLetter, Meta};
use tracing::{debug, warn};

use crate::breaker::{endpoint_of, Breakers};
use crate::devices::Device;
use crate::payload::Notification;
use crate::provider::SendError;
use crate::service::{bump, Push};

impl Push {
    /// Sends `n` to `device` with retries, through its endpoint's circuit breaker; what
    /// cannot be sent ends in the dead-letter topic.
    pub(crate) async fn deliver(
        &self,
        device: &Device,
        n: &Notification,
        source: Option<(i32, i64)>,
    ) {
        let Some(provider) = self.providers.get(device.platform.as_str()) else {
            let why = format!("no push provider for platform {:?}", device.platform);
            return self.dead_letter(device, n, &why, source).await;
        };
        let endpoint = endpoint_of(&device.url);
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            let check = self.lock_breakers().check(&endpoint, Instant::now());
            if let Err(wait) = check {
                if started.elapsed() >= self.config.give_up_after {
                    let why =
                        format!("circuit of {endpoint} open for longer than the retry budget");
                    return self.dead_letter(device, n, &why, source).await;
                }
                tokio::time::sleep(wait.clamp(Duration::from_millis(50), Duration::from_secs(1)))
                    .await;
                continue;
            }
            let sent = {
                let user = self.user_permits(&n.user_id);
                let Ok(_mine) = user.acquire().await else {
                    return;
                };
                let Ok(_permit) = self.permits.acquire().await else {
                    return;
                };
                provider.send(&device.url, n).await
            };
            match sent {
                Ok(()) => {
                    self.lock_breakers().success(&endpoint);
                    bump(&self.stats.delivered, "delivered");
                    debug!(user = %n.user_id, device = %n.device_id, id = %n.id, "pushed");
                    return;
                }
                Err(SendError::Permanent(why)) => {
                    // The endpoint answered: it is up, the request is what failed.
                    self.lock_breakers().success(&endpoint);
                    return self.dead_letter(device, n, &why, source).await;
                }
                Err(SendError::Retryable(why)) => {
                    self.lock_breakers().failure(&endpoint, Instant::now());
                    if self.config.backoff.gives_up_after(attempt)
                        || started.elapsed() >= self.config.give_up_after
                    {
                        let why = format!("{why} (after {} attempts)", attempt + 1);
                        return self.dead_letter(device, n, &why, source).await;
                    }
                    bump(&self.stats.retried, "retried");
                    debug!(device = %n.device_id, attempt, error = %why, "push failed; retrying");
                    tokio::time::sleep(self.config.backoff.delay(attempt)).await;
                    attempt += 1;
                }
            }
        }
    }

    /// The semaphore of `user`'s requests in flight.
    fn user_permits(&self, user: &str) -> std::sync::Arc<tokio::sync::Semaphore> {
        let mut all = self.user_permits.lock().unwrap_or_else(|p| p.into_inner());
        if all.len() >= 10_000 {
            // Only users with a delivery under way hold a clone.
            all.retain(|_, s| std::sync::Arc::strong_count(s) > 1);
        }
        all.entry(user.to_string())
            .or_insert_with(|| {
                std::sync::Arc::new(tokio::sync::Semaphore::new(
                    self.config.per_user_in_flight.max(1),
                ))
            })
            .clone()
    }

    fn lock_breakers(&self) -> std::sync::MutexGuard<'_, Breakers> {
        self.breakers.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn dead_letter(
        &self,
        device: &Device,
        n: &Notification,
        why: &str,
        source: Option<(i32, i64)>,
    ) {
        bump(&self.stats.dead_lettered, "dead_lettered");
        warn!(user = %n.user_id, device = %n.device_id, id = %n.id, error = %why, "push dead-lettered");
        let body = n.to_body();
        let (source_partition, source_offset) = source.unwrap_or((-1, -1));
        let letter = DeadLetter {
            meta: Meta::new("push"),
            topic: format!("push:{}", device.platform),
            partition: None,
            key: n.user_id.as_bytes().to_vec(),
            value_size: body.len() as i64,
            value: Some(body),
            error: why.to_string(),
            source_topic: self.config.topics.push.clone(),
            source_partition,
            source_offset,
        };
        let Ok(value) = encode(&letter) else { return };
        for attempt in 0..5u32 {
            match self
                .log
                .append(
                    &self.config.topics.dead_letters,
                    n.user_id.as_bytes(),
                    Some(&value),
                )
                .await
            {
                Ok(_) => return,
                Err(e) if attempt < 4 => {
                    warn!(error = %e, "dead letter not written; retrying");
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
                Err(e) => warn!(error = %e, "dead letter lost"),
            }
        }
    }
}
