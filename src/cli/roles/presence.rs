//! Where presence is kept for people to see (the presence topic, or Redis), and the
//! Redis URL with its password redacted.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use parley_sequencer::EventLog;
use tracing::info;

/// Where presence is kept for people to see.
#[derive(Debug, Clone, Args)]
pub struct PresenceArgs {
    /// Redis for presence (e.g. redis://127.0.0.1:6379/). Without it, presence is
    /// derived from the presence topic. Its password is never printed (logs show the URL
    /// with `***` in its place, and --help hides the variable's value).
    #[arg(long, env = "PARLEY_REDIS_URL", hide_env_values = true)]
    pub(super) redis: Option<String>,
    /// Prefix of the presence keys in Redis.
    #[arg(long, env = "PARLEY_REDIS_PREFIX", default_value = "parley:")]
    pub(super) redis_prefix: String,
}

impl PresenceArgs {
    /// The external store, if one is configured.
    pub(super) async fn external(
        &self,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> anyhow::Result<Option<Arc<dyn parley_presence::PresenceStore>>> {
        let Some(url) = &self.redis else {
            return Ok(None);
        };
        let store =
            parley_presence::RedisPresence::connect(url, &self.redis_prefix, shutdown.clone())
                .await
                .with_context(|| format!("connecting to Redis at {}", redacted(url)))?;
        info!(url = %redacted(url), "presence kept in Redis");
        Ok(Some(store))
    }

    pub(super) async fn source(
        &self,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> anyhow::Result<parley_gateway::service::PresenceSource> {
        Ok(match self.external(shutdown).await? {
            Some(s) => parley_gateway::service::PresenceSource::Store(s),
            None => parley_gateway::service::PresenceSource::Log,
        })
    }

    /// The store to read presence from: Redis, or else the presence topic.
    pub(super) async fn store(
        &self,
        log: &Arc<dyn EventLog>,
        topic: &str,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> anyhow::Result<Arc<dyn parley_presence::PresenceStore>> {
        presence_store(self.external(shutdown).await?, log, topic, shutdown).await
    }
}

/// `url` with the password of its user info (`redis://user:password@host`) replaced by
/// `***`, for logs and errors.
pub fn redacted(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        // Not a URL: nothing of it is shown, as a password may be in there.
        return "(a URL that does not parse)".to_string();
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    } else if !parsed.username().is_empty() {
        // `redis://secret@host`: some clients take a lone user info as the password.
        let _ = parsed.set_username("***");
    }
    parsed.to_string()
}

/// The store presence is read from: `external` (Redis) if given, else the presence topic.
pub(super) async fn presence_store(
    external: Option<Arc<dyn parley_presence::PresenceStore>>,
    log: &Arc<dyn EventLog>,
    topic: &str,
    shutdown: &tokio_util::sync::CancellationToken,
) -> anyhow::Result<Arc<dyn parley_presence::PresenceStore>> {
    if let Some(s) = external {
        return Ok(s);
    }
    let store = parley_presence::LogPresence::follow(
        log.clone(),
        topic,
        Duration::from_secs(30),
        shutdown.clone(),
    )
    .await
    .with_context(|| format!("reading presence from {topic}"))?;
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn passwords_in_urls_are_redacted() {
        assert_eq!(
            redacted("redis://:s3cret@10.0.0.1:6379/0"),
            "redis://:***@10.0.0.1:6379/0"
        );
        assert_eq!(
            redacted("redis://parley:s3cret@host/"),
            "redis://parley:***@host/"
        );
        assert_eq!(redacted("rediss://s3cret@host"), "rediss://***@host");
        assert_eq!(
            redacted("redis://127.0.0.1:6379/"),
            "redis://127.0.0.1:6379/"
        );
        assert!(!redacted("not a url s3cret").contains("s3cret"));
        assert!(!redacted("redis://u:p@ss@host/").contains("p@ss"));
    }
}
