//! What an operator relies on, against the real broker: `/metrics` series that move
//! under load, `/readyz` that is false while the projector is far behind, rate limits
//! that answer with a wait, bounded work per session, one-use WebSocket tickets,
//! sessions that end with their token (and a client that reconnects), a projector API
//! that refuses requests without the service token, and short secrets refused at
//! startup.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::stack::{kafka, provision, settings, InProcess, SERVICE_TOKEN};
use common::{eventually, live, token, LONG};
use futures::StreamExt;
use parley_client::{Api, Reconnecting, SessionError};
use parley_gateway::limits::{Rate, RateConfig};
use parley_schemas::{encode, ids, ConversationCreated, ConversationKind, MessagePosted, Meta};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

async fn text(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.expect("request");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

/// The value of the first series in a Prometheus text whose name and labels start with
/// `prefix` (e.g. `parley_frames_in_total{type="send"`), summed over the matches.
fn series(metrics: &str, prefix: &str) -> Option<f64> {
    let values: Vec<f64> = metrics
        .lines()
        .filter(|l| !l.starts_with('#') && l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_move_under_load_and_the_gateway_is_ready() {
    let stack = InProcess::start("metrics", 1).await;
    let base = &stack.gateways[0];
    let (status, body) = text(&format!("{base}/healthz")).await;
    assert_eq!((status, body.as_str()), (200, r#"{"ok":true}"#));
    eventually("the gateway ready", LONG, || async {
        text(&format!("{base}/readyz")).await.0 == 200
    })
    .await;
    let (_, ready) = text(&format!("{base}/readyz")).await;
    let ready: Value = serde_json::from_str(&ready).unwrap();
    for check in ["log", "deliveries", "views"] {
        assert_eq!(ready["checks"][check]["ok"], true, "{ready}");
    }

    let before = text(&format!("{base}/metrics")).await.1;
    let sends_before = series(&before, r#"parley_frames_in_total{type="send"}"#).unwrap_or(0.0);
    let alice = token(base, "alice").await;
    let bob = token(base, "bob").await;
    let (a, b) = (live(base, &alice).await, live(base, &bob).await);
    let conv = Api::new(base, &alice).create_direct("bob").await.unwrap();
    for i in 0..5 {
        a.send(&conv, &format!("m{i}"), "hello").await.unwrap();
    }
    b.wait_messages(&conv, 5, LONG).await.unwrap();

    let after = text(&format!("{base}/metrics")).await.1;
    let sends_after = series(&after, r#"parley_frames_in_total{type="send"}"#).unwrap();
    assert!(
        sends_after >= sends_before + 5.0,
        "{sends_before} -> {sends_after}"
    );
    // Lag is measured every 2 s.
    eventually("the fanout-worker's lag measured", LONG, || async {
        let m = text(&format!("{base}/metrics")).await.1;
        let topic = format!(
            r#"parley_consumer_lag{{role="fanout",topic="{}""#,
            stack.topics.events
        );
        series(&m, &topic).is_some()
    })
    .await;
    let after = text(&format!("{base}/metrics")).await.1;
    for name in [
        "parley_connections ",
        r#"parley_frames_out_total{type="message"}"#,
        r#"parley_frames_out_total{type="ready"}"#,
        r#"parley_sends_total{result="sent"}"#,
        "parley_append_seconds_bucket",
        "parley_deliver_latency_seconds_count",
        r#"parley_consumer_lag{role="fanout""#,
        r#"parley_consumer_lag{role="projector""#,
        r#"parley_rocksdb_bytes{property="memtables"}"#,
        "parley_process_resident_memory_bytes",
    ] {
        assert!(series(&after, name).is_some(), "no {name} in:\n{after}");
    }
    assert!(series(&after, "parley_connections ").unwrap() >= 2.0);
    assert!(series(&after, "parley_process_resident_memory_bytes").unwrap() > 1e6);
    assert!(series(&after, "parley_deliver_latency_seconds_count").unwrap() >= 5.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readyz_is_false_while_the_projector_is_far_behind() {
    let log = kafka().await;
    let prefix = common::fresh_prefix("readyz");
    provision(&*log, &prefix).await;
    let topics = settings(&prefix).names();
    // A backlog of messages for the projector to apply.
    let meta = || Meta::new("alice");
    let conv = "g-backlog";
    let created = encode(&ConversationCreated {
        meta: meta(),
        conversation_id: conv.into(),
        kind: ConversationKind::Group,
        title: None,
        members: vec!["alice".into()],
    })
    .unwrap();
    log.append(&topics.events, conv.as_bytes(), Some(&created))
        .await
        .unwrap();
    let backlog = 3_000;
    futures::stream::iter(0..backlog)
        .map(|i| {
            let log = log.clone();
            let topic = topics.events.clone();
            async move {
                let m = MessagePosted {
                    meta: meta(),
                    conversation_id: conv.into(),
                    message_id: ids::message_id("alice", &format!("b{i}")),
                    client_msg_id: format!("b{i}"),
                    body: "backlog".into(),
                    reply_to: None,
                    attachments: Vec::new(),
                    sealed: None,
                };
                log.append(&topic, conv.as_bytes(), Some(&encode(&m).unwrap()))
                    .await
                    .unwrap();
            }
        })
        .buffer_unordered(256)
        .collect::<Vec<()>>()
        .await;

    let data = tempfile::tempdir().unwrap();
    let mut config = parley_projector::ProjectorConfig::new(data.path().join("p"), &topics);
    config.apply_delay = Duration::from_millis(150);
    config.batch_max = 100;
    config.ready_lag = 200;
    config.service_token = Some(SERVICE_TOKEN.into());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    tokio::spawn(parley_projector::run(
        config,
        log.clone(),
        listener,
        shutdown,
    ));
    common::stack::wait_healthy(&base).await;

    // Far behind: not ready, and the report says why.
    let (status, body) = text(&format!("{base}/readyz")).await;
    assert_eq!(status, 503, "{body}");
    let readyz = format!("{base}/readyz");
    let report = tokio::time::timeout(LONG, async {
        loop {
            let report: Value = serde_json::from_str(&text(&readyz).await.1).unwrap();
            let measured = report["checks"]["projector_caught_up"]["detail"]
                .as_str()
                .is_some_and(|d| d.contains("largest lag"));
            if measured {
                break report;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the lag was never measured");
    assert_eq!(
        report["checks"]["projector_caught_up"]["ok"], false,
        "{report}"
    );
    let lag = series(
        &text(&format!("{base}/metrics")).await.1,
        &format!(
            r#"parley_consumer_lag{{role="projector",topic="{}""#,
            topics.events
        ),
    );
    assert!(lag.is_some_and(|l| l > 200.0), "lag {lag:?}");

    // Caught up: ready.
    eventually("the projector ready", LONG, || async {
        text(&format!("{base}/readyz")).await.0 == 200
    })
    .await;

    // The query API is internal: no token, no answer.
    let (status, body) = text(&format!("{base}/v1/status")).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("unauthorized"), "{body}");
    let wrong = reqwest::Client::new()
        .get(format!("{base}/v1/status"))
        .bearer_auth("not-the-token-of-this-deployment-at-all")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let ok = common::stack::projector_get(format!("{base}/v1/status"))
        .await
        .unwrap();
    assert_eq!(ok.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rate_limits_answer_with_how_long_to_wait() {
    let limits = RateConfig {
        typing: Rate::per_second(1, 2),
        creates: Rate::per_minute(1, 1),
        upgrades_per_ip: Rate::per_minute(1, 6),
        frames_in_progress: 2,
        ..RateConfig::unlimited()
    };
    let stack = InProcess::start_limited("limits", 1, limits).await;
    let base = &stack.gateways[0];
    let alice = token(base, "alice").await;
    let api = Api::new(base, &alice);

    // REST: 429 with Retry-After and retry_after_ms.
    let conv = api.create_direct("bob").await.unwrap();
    let refused = reqwest::Client::new()
        .post(format!("{base}/v1/conversations"))
        .bearer_auth(&alice)
        .json(&json!({"type": "direct", "members": ["carol"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 429);
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    assert!(body["error"]["retry_after_ms"].as_u64().unwrap() > 0);

    // WebSocket: typing past its allowance gets rate_limited frames with a wait.
    let s = live(base, &alice).await;
    for _ in 0..6 {
        s.send_json(json!({"type": "typing", "conversation_id": conv, "active": true}))
            .await
            .unwrap();
    }
    eventually("typing refused", LONG, || async {
        s.errors().iter().any(|e| {
            e["code"] == "rate_limited"
                && e["message"].as_str().unwrap_or("").contains("typing")
                && e["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0)
        })
    })
    .await;

    // Too many frames in progress: told to slow down, not given more tasks.
    for i in 0..40 {
        s.send_json(
            json!({"type": "history", "conversation_id": conv, "request_id": format!("h{i}")}),
        )
        .await
        .unwrap();
    }
    eventually("history throttled", LONG, || async {
        s.errors().iter().any(|e| {
            e["code"] == "rate_limited"
                && e["message"].as_str().unwrap_or("").contains("in progress")
                && e["request_id"].as_str().is_some_and(|r| r.starts_with('h'))
        })
    })
    .await;
    assert!(s.closed().is_none(), "throttled, not cut off");

    // Upgrades per address: past the burst, the handshake gets 429.
    let mut refused = None;
    for _ in 0..10 {
        match parley_client::Session::connect(base, &alice).await {
            Ok(_) => {}
            Err(SessionError::Connect(e)) => {
                refused = Some(e);
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    let refused = refused.expect("upgrades were never limited");
    assert!(refused.contains("429"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_ticket_opens_one_socket_and_a_session_ends_with_its_token() {
    let stack = InProcess::start("tickets", 1).await;
    let base = stack.gateways[0].clone();
    let alice = token(&base, "alice").await;

    // A ticket: one socket, once; never a bearer token.
    let ticket: Value = Api::new(&base, &alice)
        .ok(reqwest::Method::POST, "/v1/ws-ticket", None)
        .await
        .unwrap();
    assert_eq!(ticket["expires_in_ms"], 30_000);
    let ticket = ticket["ticket"].as_str().unwrap().to_string();
    let url = format!(
        "{}/v1/ws?ticket={ticket}",
        base.replacen("http://", "ws://", 1)
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("the ticket opens a socket");
    let first = tokio::time::timeout(LONG, ws.next()).await.unwrap();
    let Some(Ok(Message::Text(t))) = first else {
        panic!("{first:?}")
    };
    let ready: Value = serde_json::from_str(t.as_str()).unwrap();
    assert_eq!(
        (ready["type"].as_str(), ready["user_id"].as_str()),
        (Some("ready"), Some("alice"))
    );
    let _ = ws.close(None).await;
    let again = tokio_tungstenite::connect_async(url.as_str()).await;
    let err = again.expect_err("a ticket is used once").to_string();
    assert!(err.contains("401"), "{err}");
    let as_bearer = Api::new(&base, &ticket).conversations().await;
    assert!(as_bearer.is_err(), "a ticket is not a token");

    // A session ends when its token does (4001); the client gets a new token,
    // reconnects and syncs what was sent meanwhile.
    let bob = token(&base, "bob").await;
    let conv = Api::new(&base, &bob).create_direct("carol").await.unwrap();
    let minted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let source = {
        let (base, minted) = (base.clone(), minted.clone());
        move || -> futures::future::BoxFuture<'static, Result<String, SessionError>> {
            let (base, minted) = (base.clone(), minted.clone());
            Box::pin(async move {
                minted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Api::dev_token_for(&base, "carol", 4).await
            })
        }
    };
    let mut carol = Reconnecting::connect(&base, source, LONG).await.unwrap();
    let why = carol
        .session()
        .wait_closed(Duration::from_secs(30))
        .await
        .unwrap();
    assert!(why.starts_with("4001"), "closed with {why}");
    assert!(why.contains("token_expired"), "{why}");
    let b = live(&base, &bob).await;
    b.send(&conv, "while-away", "you were away").await.unwrap();
    let reason = carol.ensure().await.unwrap();
    assert!(reason.is_some_and(|r| r.starts_with("4001")));
    assert_eq!(carol.reconnects(), 1);
    assert_eq!(minted.load(std::sync::atomic::Ordering::Relaxed), 2);
    carol.session().wait_messages(&conv, 1, LONG).await.unwrap();
}

#[test]
fn short_secrets_and_a_missing_service_token_are_refused_at_startup() {
    let out = common::parley()
        .args(["gateway", "--jwt-secret", "too-short"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("at least 32"), "{err}");

    let out = common::parley()
        .args(["projector"])
        .env_remove("PARLEY_SERVICE_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("PARLEY_SERVICE_TOKEN"), "{err}");

    let out = common::parley()
        .args(["projector", "--service-token", "short"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("at least 32"), "{err}");
}
