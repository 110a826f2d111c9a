//! [`Reconnecting`]: a session that outlives its token. When the gateway ends a
//! session (close 4001 `token_expired` when its token expires; any other close too), the
//! next [`Reconnecting::ensure`] asks the [`TokenSource`] for a fresh token, connects
//! again, carries the messages held over, and syncs from their cursors: nothing sent
//! meanwhile is missed.

use std::time::Duration;

use futures::future::BoxFuture;

use crate::session::{Session, SessionError};

/// Where fresh tokens come from (an application's login refresh).
pub trait TokenSource: Send + Sync {
    fn token(&self) -> BoxFuture<'_, Result<String, SessionError>>;
}

impl<F> TokenSource for F
where
    F: Fn() -> BoxFuture<'static, Result<String, SessionError>> + Send + Sync,
{
    fn token(&self) -> BoxFuture<'_, Result<String, SessionError>> {
        self()
    }
}

/// Close code of a session whose token expired.
pub const CLOSE_TOKEN_EXPIRED: u16 = 4001;

pub struct Reconnecting<T: TokenSource> {
    base: String,
    source: T,
    session: Session,
    /// Sessions opened after the first.
    reconnects: usize,
    timeout: Duration,
}

impl<T: TokenSource> Reconnecting<T> {
    /// Connects to `base` with a token from `source`, and waits until the session is
    /// ready (at most `timeout`).
    pub async fn connect(base: &str, source: T, timeout: Duration) -> Result<Self, SessionError> {
        let token = source.token().await?;
        let session = Session::connect(base, &token).await?;
        session.ready(timeout).await?;
        Ok(Reconnecting {
            base: base.to_string(),
            source,
            session,
            reconnects: 0,
            timeout,
        })
    }

    /// The current session.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// How many times it has reconnected.
    pub fn reconnects(&self) -> usize {
        self.reconnects
    }

    /// If the session has ended, reconnects with a fresh token and syncs; returns why it
    /// had ended (`None`: it was still open).
    pub async fn ensure(&mut self) -> Result<Option<String>, SessionError> {
        let Some(reason) = self.session().closed() else {
            return Ok(None);
        };
        let token = self.source.token().await?;
        let next = Session::connect(&self.base, &token).await?;
        // From here on the new session is the one held, whatever happens next: a failed
        // ready or sync leaves it to be tried again (its store holds the old one's).
        let old = std::mem::replace(&mut self.session, next);
        self.session.absorb(old.into_store());
        self.reconnects += 1;
        self.session.ready(self.timeout).await?;
        self.session.sync(self.timeout).await?;
        Ok(Some(reason))
    }
}
