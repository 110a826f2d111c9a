//! The seam: what every presence store does.

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::broadcast;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("presence log: {0}")]
    Log(#[from] parley_sequencer::Error),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis reply: {0}")]
    Reply(#[from] redis::ParsingError),
    #[error("presence store: {0}")]
    Other(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// What a store knows of one user.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    /// Some device of the user is connected (its TTL has not lapsed).
    pub online: bool,
    /// When the user's last device went away (ms since the Unix epoch): ended, or its
    /// TTL lapsed. `None` while online, or when the store never saw the user.
    pub last_seen: Option<i64>,
}

/// Who is online. A user is online while any of their devices is; a device is a
/// gateway slot (several sessions on one gateway are one device here).
#[async_trait]
pub trait PresenceStore: Send + Sync + 'static {
    /// `device` of `user` is connected for `ttl` more, unless refreshed again.
    async fn refresh(&self, user: &str, device: i32, ttl: Duration) -> Result<()>;
    /// `device` of `user` went away now.
    async fn gone(&self, user: &str, device: i32) -> Result<()>;
    /// What the store knows of each of `users`, in the same order.
    async fn lookup(&self, users: &[String]) -> Result<Vec<Seen>>;
    /// Users whose state may have changed (a device came or went, or a TTL lapsed).
    /// A receiver that lags loses notices, not state: [`PresenceStore::lookup`] tells.
    fn changes(&self) -> broadcast::Receiver<String>;
}

/// Whether a user whose devices last until `expires` (ms) is online at `now`, and since
/// when not.
pub(crate) fn seen_of(
    expires: impl IntoIterator<Item = i64>,
    ended: Option<i64>,
    now: i64,
) -> Seen {
    let mut online = false;
    let mut lapsed: Option<i64> = None;
    for e in expires {
        if e > now {
            online = true;
        } else {
            lapsed = lapsed.max(Some(e));
        }
    }
    if online {
        Seen {
            online,
            last_seen: None,
        }
    } else {
        Seen {
            online,
            last_seen: ended.max(lapsed),
        }
    }
}

/// How many notices a lagging receiver of [`PresenceStore::changes`] may miss.
pub(crate) const CHANGES: usize = 16 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn online_while_any_device_is_and_last_seen_is_the_latest_end() {
        assert_eq!(
            seen_of([5, 20], Some(3), 10),
            Seen {
                online: true,
                last_seen: None
            }
        );
        assert_eq!(seen_of([5, 7], Some(3), 10).last_seen, Some(7));
        assert_eq!(seen_of([5], Some(9), 10).last_seen, Some(9));
        assert_eq!(seen_of([], None, 10), Seen::default());
    }
}
