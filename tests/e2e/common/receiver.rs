//! A webhook receiver for the push tests: a real HTTP server on loopback that keeps
//! every notification it accepts, checks its signature, and can be told to fail or to
//! go away for a while.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use parley_push::payload::{verify, Notification, SIGNATURE_HEADER};
use tokio_util::sync::CancellationToken;

#[derive(Default)]
pub struct Received {
    /// Accepted notifications, first copy of each id, in arrival order.
    pub notifications: Vec<Notification>,
    /// How many copies of each id came (a receiver deduplicates by it).
    pub copies: BTreeMap<uuid::Uuid, usize>,
    /// Requests whose signature did not verify.
    pub bad_signatures: usize,
    /// Requests answered with an error status.
    pub refused: usize,
}

struct Inner {
    secret: Vec<u8>,
    /// Status to answer with (200 = accept).
    status: AtomicU16,
    received: Mutex<Received>,
}

pub struct Receiver {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
    stop: Mutex<CancellationToken>,
}

async fn hook(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let mut r = inner.received.lock().unwrap();
    let signature = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !verify(&inner.secret, &body, signature) {
        r.bad_signatures += 1;
        return StatusCode::UNAUTHORIZED;
    }
    let status = StatusCode::from_u16(inner.status.load(Ordering::SeqCst)).unwrap();
    if !status.is_success() {
        r.refused += 1;
        return status;
    }
    let n: Notification = match serde_json::from_slice(&body) {
        Ok(n) => n,
        Err(_) => return StatusCode::BAD_REQUEST,
    };
    let copies = r.copies.entry(n.id).or_insert(0);
    *copies += 1;
    if *copies == 1 {
        r.notifications.push(n);
    }
    StatusCode::OK
}

/// The same answer for everything: a URL that always fails permanently.
async fn gone() -> StatusCode {
    StatusCode::GONE
}

impl Receiver {
    pub async fn start(secret: &str) -> Receiver {
        let inner = Arc::new(Inner {
            secret: secret.as_bytes().to_vec(),
            status: AtomicU16::new(200),
            received: Mutex::new(Received::default()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let r = Receiver {
            addr,
            inner,
            stop: Mutex::new(CancellationToken::new()),
        };
        r.serve(listener);
        r
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let app = Router::new()
            .route("/hook", post(hook))
            .route("/gone", post(gone))
            .with_state(self.inner.clone());
        let stop = self.stop.lock().unwrap().clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
        });
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops listening: connections are refused until [`Receiver::restart`].
    pub fn kill(&self) {
        let mut stop = self.stop.lock().unwrap();
        stop.cancel();
        *stop = CancellationToken::new();
    }

    /// Listens again on the same address.
    pub async fn restart(&self) {
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            }
        };
        self.serve(listener);
    }

    pub fn answer_with(&self, status: u16) {
        self.inner.status.store(status, Ordering::SeqCst);
    }

    pub fn with<T>(&self, f: impl FnOnce(&Received) -> T) -> T {
        f(&self.inner.received.lock().unwrap())
    }

    /// Notifications to `user`, first copies only.
    pub fn to(&self, user: &str) -> Vec<Notification> {
        self.with(|r| {
            r.notifications
                .iter()
                .filter(|n| n.user_id == user)
                .cloned()
                .collect()
        })
    }
}
