//! Helpers shared by the end-to-end tests: the broker they run against, fresh topic
//! prefixes, the `parley` binary, and whole stacks ([`stack`]).
#![allow(dead_code)]

pub mod chat;
pub mod receiver;
pub mod stack;

use std::process::Command;
use std::time::Duration;

use parley_client::{Api, Session};

/// How long the end-to-end tests wait for anything that should happen.
pub const LONG: Duration = Duration::from_secs(60);

/// The broker `scripts/kafka.sh start` runs (override with `PARLEY_TEST_KAFKA`).
pub fn bootstrap() -> String {
    std::env::var("PARLEY_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

pub fn log_url() -> String {
    format!("kafka://{}", bootstrap())
}

/// A topic prefix of this test only.
pub fn fresh_prefix(test: &str) -> String {
    format!(
        "t-{test}-{}.",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// The `parley` binary built for these tests.
pub fn parley() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_parley"));
    c.env("PARLEY_LOG_LEVEL", "warn");
    c
}

/// A dev token of `user` from gateway `base`.
pub async fn token(base: &str, user: &str) -> String {
    Api::dev_token(base, user).await.expect("dev token")
}

/// A session of `token` at `base`, once it is live.
pub async fn live(base: &str, token: &str) -> Session {
    let s = Session::connect(base, token).await.expect("connect");
    assert!(s.ready(LONG).await.expect("ready"), "session not live");
    s
}

/// `name`'s REST client and live session at `base`.
pub async fn user(base: &str, name: &str) -> (Api, Session) {
    let token = token(base, name).await;
    let session = live(base, &token).await;
    (Api::new(base, &token), session)
}

/// Waits until `check` holds, at most `timeout`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A client WebSocket over a plain TCP stream.
pub type RawSocket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// A raw WebSocket of `user` on gateway `base`, which this test reads from only if it
/// wants to (a client that stopped reading, or vanished). Its receive buffer is small
/// and fixed (no autotuning), so a client that does not read stops taking bytes soon.
pub async fn raw_socket(base: &str, token: &str) -> RawSocket {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = format!("{}/v1/ws", base.replacen("http://", "ws://", 1));
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let addr: std::net::SocketAddr = base.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    let tcp = socket.connect(addr).await.expect("tcp");
    tokio_tungstenite::client_async(req, tcp)
        .await
        .expect("ws")
        .0
}
