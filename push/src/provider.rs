//! Delivery providers: the seam between the push worker and the outside world.
//!
//! A [`PushProvider`] delivers one [`Notification`] to one device target and says whether
//! a failure is worth retrying. [`WebhookProvider`] POSTs the signed JSON body to a URL.

use std::error::Error as _;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::CONTENT_TYPE;
use reqwest::{redirect, StatusCode, Url};

use crate::payload::{sign, Notification, SIGNATURE_HEADER};
use crate::targets::{literal_ip, Refused, WebhookTargets};

/// Header carrying the notification id, for receivers that deduplicate before parsing.
pub const NOTIFICATION_ID_HEADER: &str = "X-Parley-Notification-Id";

/// Why a delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Worth retrying later: network error, timeout, 5xx, 429 or 408.
    #[error("{0}")]
    Retryable(String),
    /// Retrying will not help: any other 4xx, a bad URL, or a platform this provider does
    /// not serve.
    #[error("{0}")]
    Permanent(String),
}

impl SendError {
    /// Whether the delivery should be retried.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Retryable(_))
    }
}

/// Delivers notifications for one platform.
#[async_trait]
pub trait PushProvider: Send + Sync + 'static {
    /// The platform it serves, e.g. "webhook".
    fn platform(&self) -> &'static str;

    /// Delivers `n` to `target`, the device's URL or token.
    async fn send(&self, target: &str, n: &Notification) -> Result<(), SendError>;
}

/// Delivers notifications by POSTing signed JSON to the device's URL, only to the
/// destinations its [`WebhookTargets`] allow (checked at connect time).
pub struct WebhookProvider {
    client: reqwest::Client,
    secret: Vec<u8>,
    targets: WebhookTargets,
}

impl std::fmt::Debug for WebhookProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookProvider").finish_non_exhaustive()
    }
}

impl WebhookProvider {
    /// A provider signing with `secret`, giving up on a request after `timeout`, sending
    /// only where `targets` allows, through no proxy and following no redirect. Fails
    /// only if the HTTP client cannot be initialised.
    pub fn new(
        secret: Vec<u8>,
        timeout: Duration,
        targets: WebhookTargets,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(redirect::Policy::none())
            .no_proxy()
            .dns_resolver(targets.resolver())
            .build()?;
        Ok(Self {
            client,
            secret,
            targets,
        })
    }
}

#[async_trait]
impl PushProvider for WebhookProvider {
    fn platform(&self) -> &'static str {
        "webhook"
    }

    async fn send(&self, target: &str, n: &Notification) -> Result<(), SendError> {
        let url = Url::parse(target)
            .map_err(|e| SendError::Permanent(format!("invalid webhook url: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(SendError::Permanent(format!(
                "unsupported webhook url scheme {:?}",
                url.scheme()
            )));
        }
        // Names are checked by the client's resolver as it connects; an address in the
        // URL never reaches a resolver.
        let host = url.host_str().unwrap_or_default();
        if !self.targets.host_allowed(host) {
            if let Some(ip) = literal_ip(host) {
                self.targets
                    .check_ip(ip)
                    .map_err(|e| SendError::Permanent(format!("webhook refused: {e}")))?;
            }
        }
        let body = n.to_body();
        let response = self
            .client
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, sign(&self.secret, &body))
            .header(NOTIFICATION_ID_HEADER, n.id.to_string())
            .body(body)
            .send()
            .await
            .map_err(request_error)?;
        match response.status() {
            status if status.is_success() => Ok(()),
            status if is_retryable(status) => {
                Err(SendError::Retryable(format!("webhook returned {status}")))
            }
            status => Err(SendError::Permanent(format!("webhook returned {status}"))),
        }
    }
}

fn is_retryable(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
}

/// Classifies a failed request. The URL is left out of the text, as webhook URLs may
/// carry tokens.
fn request_error(e: reqwest::Error) -> SendError {
    let e = e.without_url();
    let mut text = if e.is_timeout() {
        format!("webhook timed out: {e}")
    } else {
        format!("webhook request failed: {e}")
    };
    let mut source = e.source();
    let mut refused = false;
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        refused |= cause.downcast_ref::<Refused>().is_some();
        source = cause.source();
    }
    if e.is_builder() || refused {
        SendError::Permanent(text)
    } else {
        SendError::Retryable(text)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU16, Ordering};
    use std::sync::{Arc, Mutex};

    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::HeaderMap;
    use axum::routing::post;
    use axum::Router;
    use uuid::Uuid;

    use super::*;
    use crate::collapse::Collapsed;
    use crate::payload::verify;

    const SECRET: &[u8] = b"test-secret";

    /// The receivers of these tests listen on loopback.
    fn loopback() -> WebhookTargets {
        WebhookTargets::new(Vec::new(), true)
    }

    #[derive(Debug)]
    struct Seen {
        body: Vec<u8>,
        signature: Option<String>,
        id: Option<String>,
        content_type: Option<String>,
    }

    #[derive(Clone, Default)]
    struct Receiver {
        status: Arc<AtomicU16>,
        seen: Arc<Mutex<Vec<Seen>>>,
    }

    impl Receiver {
        fn seen(&self) -> std::sync::MutexGuard<'_, Vec<Seen>> {
            self.seen.lock().expect("lock")
        }
    }

    async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        r.seen().push(Seen {
            body: body.to_vec(),
            signature: header(SIGNATURE_HEADER),
            id: header(NOTIFICATION_ID_HEADER),
            content_type: header("content-type"),
        });
        StatusCode::from_u16(r.status.load(Ordering::SeqCst))
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// Runs a receiver answering `status`; returns its URL.
    async fn receiver(status: u16) -> (String, Receiver) {
        let r = Receiver::default();
        r.status.store(status, Ordering::SeqCst);
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(r.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}/hook"), r)
    }

    fn provider() -> WebhookProvider {
        WebhookProvider::new(SECRET.to_vec(), Duration::from_secs(5), loopback()).expect("client")
    }

    async fn send(url: &str) -> Result<(), SendError> {
        provider().send(url, &notification()).await
    }

    fn notification() -> Notification {
        let c = Collapsed {
            user_id: "alice".to_owned(),
            conversation_id: "conv".to_owned(),
            count: 2,
            first_seq: 1,
            last_seq: 2,
            message_id: Uuid::from_u128(7),
            sender_id: "bob".to_owned(),
            title: "Bob".to_owned(),
            preview: "hi".to_owned(),
            offsets: vec![(0, 1), (0, 2)],
            mentioned: false,
        };
        Notification::build(&c, "phone", Some(2), 1_700_000_000_000)
    }

    #[tokio::test]
    async fn ok_on_200_with_signed_body() {
        let (url, r) = receiver(200).await;
        let n = notification();
        provider().send(&url, &n).await.expect("delivered");
        let seen = r.seen();
        assert_eq!(seen.len(), 1);
        let got = &seen[0];
        assert_eq!(got.body, n.to_body());
        let signature = got.signature.as_deref().expect("signature header");
        assert!(verify(SECRET, &got.body, signature));
        assert!(!verify(b"wrong", &got.body, signature));
        assert_eq!(got.id, Some(n.id.to_string()));
        assert_eq!(got.content_type.as_deref(), Some("application/json"));
        let parsed: Notification = serde_json::from_slice(&got.body).expect("json");
        assert_eq!(parsed, n);
    }

    #[tokio::test]
    async fn retryable_on_503_429_408() {
        let (url, r) = receiver(503).await;
        let err = send(&url).await.expect_err("503");
        assert!(err.is_retryable(), "{err}");
        assert!(err.to_string().contains("503"), "{err}");
        for status in [429, 408, 500] {
            r.status.store(status, Ordering::SeqCst);
            let err = send(&url).await.expect_err("error");
            assert!(matches!(err, SendError::Retryable(_)), "{status}: {err}");
        }
    }

    #[tokio::test]
    async fn permanent_on_404_and_other_4xx() {
        let (url, r) = receiver(404).await;
        let err = send(&url).await.expect_err("404");
        assert!(matches!(err, SendError::Permanent(_)), "{err}");
        assert!(err.to_string().contains("404 Not Found"), "{err}");
        r.status.store(410, Ordering::SeqCst);
        let err = send(&url).await.expect_err("410");
        assert!(matches!(err, SendError::Permanent(_)), "{err}");
    }

    #[tokio::test]
    async fn redirects_are_not_followed() {
        let (url, r) = receiver(307).await;
        let err = send(&url).await.expect_err("307");
        assert!(matches!(err, SendError::Permanent(_)), "{err}");
        assert_eq!(r.seen().len(), 1);
    }

    #[tokio::test]
    async fn retryable_on_refused_connection() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind")
            .port();
        let url = format!("http://127.0.0.1:{port}/hook");
        let err = send(&url).await.expect_err("refused");
        assert!(matches!(err, SendError::Retryable(_)), "{err}");
    }

    #[tokio::test]
    async fn retryable_on_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        // Accept connections and never answer.
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let p = WebhookProvider::new(SECRET.to_vec(), Duration::from_millis(200), loopback())
            .expect("client");
        let err = p
            .send(&format!("http://{addr}/hook"), &notification())
            .await
            .expect_err("timeout");
        assert!(matches!(err, SendError::Retryable(_)), "{err}");
        assert!(err.to_string().contains("timed out"), "{err}");
    }

    #[tokio::test]
    async fn permanent_on_bad_urls() {
        let p = provider();
        for url in [
            "not a url",
            "ftp://example.com/hook",
            "mailto:a@example.com",
        ] {
            let err = p.send(url, &notification()).await.expect_err(url);
            assert!(matches!(err, SendError::Permanent(_)), "{url}: {err}");
        }
        assert_eq!(p.platform(), "webhook");
    }
}
