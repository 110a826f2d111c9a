//! Who may see what, against the real broker and real `parley` processes: the second
//! review's findings about reading what one may no longer read, watching someone's
//! presence without their consent, and learning what exists from how a refusal looks.

use crate::common;

use std::time::Duration;

use common::stack::{Options, Processes};
use common::{live, token, LONG};
use futures::{SinkExt, StreamExt};
use parley_client::Api;
use parley_schemas::frames::PresenceStatus;
use reqwest::Method;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

type Raw = common::RawSocket;

/// The next JSON frame of `ws` (None once it closed), at most `timeout`.
async fn next_frame(ws: &mut Raw, timeout: Duration) -> Option<Value> {
    loop {
        let m = tokio::time::timeout(timeout, ws.next())
            .await
            .expect("a frame in time")?;
        match m {
            Ok(Message::Text(t)) => return Some(serde_json::from_str(&t).unwrap()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

/// Finding 1: a member syncing with an old cursor reads slowly, so her pages are produced
/// only as her socket drains. She is removed from the group meanwhile, and more is
/// posted there. No page she gets may hold a message posted after her removal. (Her
/// socket's receive buffer is small: she stops taking bytes soon after she stops reading.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_removed_during_her_sync_reads_nothing_posted_after() {
    // Small pages: many frames, so the sync is still producing them when she stops
    // reading.
    let options = Options {
        gateway_args: vec!["--sync-page".into(), "25".into()],
        ..Options::gateways(1)
    };
    let stack = Processes::start_with("sync-removed", options).await;
    let g = &stack.gateways[0];
    let (amy_t, mia_t) = (token(g, "amy").await, token(g, "mia").await);
    let amy_api = Api::new(g, &amy_t);
    let group = amy_api.create_group("team", &["mia"]).await.unwrap();
    let amy = live(g, &amy_t).await;
    // 1,200 messages of 8 KB: about 10 MB, more than the sockets buffer, in 48 pages.
    let body = "x".repeat(8_000);
    let mut pending = Vec::new();
    for i in 0..1_200 {
        pending.push(
            amy.send_nowait(&group, &format!("before-{i}"), &body)
                .await
                .unwrap(),
        );
    }
    for p in pending {
        p.await.unwrap().expect("sent");
    }

    let mut mia = common::raw_socket(g, &mia_t).await;
    loop {
        let f = next_frame(&mut mia, LONG).await.expect("ready");
        if f["type"] == "ready" {
            break;
        }
    }
    mia.send(Message::Text(
        json!({"type": "sync", "cursors": {group.clone(): -1}, "request_id": "s"})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    // She takes the first page, then stops reading (for less than the write timeout).
    let first = loop {
        let f = next_frame(&mut mia, LONG).await.expect("a first page");
        if f["type"] == "sync_batch" {
            break f["messages"].as_array().unwrap().len();
        }
    };

    let removed_at = Api::new(g, &amy_t)
        .call(
            Method::DELETE,
            &format!("/v1/conversations/{group}/members/mia"),
            None,
        )
        .await
        .unwrap();
    assert!(removed_at.is_ok(), "removal: {removed_at:?}");
    let mut after = Vec::new();
    for i in 0..3 {
        let sent = amy
            .send(
                &group,
                &format!("after-{i}"),
                &format!("after the removal {i}"),
            )
            .await
            .unwrap();
        after.push(sent.seq);
    }
    // The views hold them (and her removal) before she reads on.
    common::eventually("the views hold the later messages", LONG, || async {
        amy_api
            .all_messages(&group)
            .await
            .unwrap()
            .iter()
            .any(|m| m.seq == *after.last().unwrap())
    })
    .await;

    // She reads on, to the end of her sync.
    let mut seqs = Vec::new();
    let mut synced = false;
    while let Some(f) = next_frame(&mut mia, LONG).await {
        match f["type"].as_str() {
            Some("sync_batch") => {
                for m in f["messages"].as_array().unwrap() {
                    let body = m["body"].as_str().unwrap_or_default();
                    assert!(
                        !body.starts_with("after the removal"),
                        "a removed member got a message posted after her removal: seq {}",
                        m["seq"]
                    );
                    seqs.push(m["seq"].as_i64().unwrap());
                }
            }
            Some("message") => {
                assert!(
                    !after.contains(&f["seq"].as_i64().unwrap()),
                    "a removed member got a live copy of {f}"
                );
            }
            Some("synced") => {
                synced = true;
                break;
            }
            _ => {}
        }
    }
    assert!(synced, "the sync did not end");
    // She got what was posted while she was a member, in full.
    assert_eq!(first + seqs.len(), 1_200, "pages of what she may read");
}

/// Finding 5: a direct conversation's id is a public function of its pair, so how a
/// stranger is refused must not tell whether the pair ever chatted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_cannot_tell_an_existing_direct_conversation_from_a_missing_one() {
    let stack = Processes::start("exists-leak", 1).await;
    let g = &stack.gateways[0];
    let amy = Api::new(g, &token(g, "amy").await);
    let eve = Api::new(g, &token(g, "eve").await);
    let existing = amy.create_direct("bob").await.unwrap();
    let missing = parley_schemas::ids::direct_conversation_id("amy", "zed");
    assert_eq!(
        existing,
        parley_schemas::ids::direct_conversation_id("amy", "bob")
    );
    let answer = |conv: String| {
        let eve = &eve;
        async move {
            let mut out = Vec::new();
            for (method, path, body) in [
                (Method::GET, format!("/v1/conversations/{conv}"), None),
                (
                    Method::GET,
                    format!("/v1/conversations/{conv}/messages"),
                    None,
                ),
                (
                    Method::GET,
                    format!("/v1/conversations/{conv}/receipts"),
                    None,
                ),
                (
                    Method::POST,
                    format!("/v1/conversations/{conv}/messages"),
                    Some(json!({"client_msg_id": "e1", "body": "hello?"})),
                ),
                (Method::POST, format!("/v1/conversations/{conv}/mute"), None),
            ] {
                let r = eve
                    .call(method.clone(), &path, body)
                    .await
                    .unwrap()
                    .expect_err("refused");
                // The body names the id asked for; nothing else may differ.
                let text = r.body.to_string().replace(&conv, "<id>");
                out.push((method.to_string(), r.status.as_u16(), text));
            }
            out
        }
    };
    let (a, b) = (answer(existing).await, answer(missing).await);
    assert_eq!(a, b, "existing vs missing");
    assert!(a.iter().all(|(_, status, _)| *status == 403), "{a:?}");
}

/// Finding 5: REST takes the token from the `Authorization` header only (protocol.md); a
/// `?token=` in a REST URL is not a credential. The WebSocket still takes one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_takes_no_token_from_the_url() {
    let stack = Processes::start("token-url", 1).await;
    let g = &stack.gateways[0];
    let t = token(g, "amy").await;
    let http = reqwest::Client::new();
    for path in ["/v1/conversations", "/v1/inbox", "/v1/devices"] {
        let r = http
            .get(format!("{g}{path}?token={t}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized", "{path}: {body}");
        let r = http
            .get(format!("{g}{path}"))
            .bearer_auth(&t)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path} with the header");
    }
    let ws = format!("{}/v1/ws?token={t}", g.replacen("http://", "ws://", 1));
    let (mut socket, _) = tokio_tungstenite::connect_async(ws.as_str())
        .await
        .expect("a socket opened with ?token=");
    let first = loop {
        match socket.next().await.expect("a frame").expect("a frame") {
            Message::Text(t) => break serde_json::from_str::<Value>(&t).unwrap(),
            _ => continue,
        }
    };
    assert_eq!(first["type"], "ready", "{first}");
}

/// Finding 5: the Redis URL's password is printed neither in a role's logs nor in
/// `--help`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_password_is_never_printed() {
    const PASSWORD: &str = "hunter2-of-parley";
    let redis = std::env::var("PARLEY_TEST_REDIS").unwrap_or("redis://127.0.0.1:6379/".into());
    let with_password = redis.replacen("redis://", &format!("redis://:{PASSWORD}@"), 1);
    let help = common::parley()
        .args(["gateway", "--help"])
        .env("PARLEY_REDIS_URL", &with_password)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&help.stdout).to_string() + &String::from_utf8_lossy(&help.stderr);
    assert!(text.contains("PARLEY_REDIS_URL"), "{text}");
    assert!(
        !text.contains(PASSWORD),
        "--help shows the password:\n{text}"
    );

    // A gateway given it: whether Redis takes the password or not, it logs the URL.
    let prefix = common::fresh_prefix("redis-url");
    common::stack::provision(&*common::stack::kafka().await, &prefix).await;
    let addr = common::stack::free_port().to_string();
    let mut gateway = common::stack::Proc::spawn_with(
        "gateway",
        &prefix,
        &[
            "gateway",
            "--http",
            &addr,
            "--dev-auth",
            "--gateway-id",
            "0",
            // No projector there: the gateway goes on to connect to Redis regardless.
            "--projector",
            "http://127.0.0.1:9",
        ],
        &[
            ("PARLEY_REDIS_URL".into(), with_password.clone()),
            ("PARLEY_LOG_LEVEL".into(), "debug".into()),
        ],
    );
    common::eventually("the gateway logs about Redis", LONG, || async {
        let log = gateway.log_text();
        log.contains("kept in Redis") || log.contains("connecting to Redis")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    gateway.kill();
    let log = gateway.log_text();
    assert!(
        !log.contains(PASSWORD),
        "the log shows the password:\n{log}"
    );
    assert!(log.contains(":***@"), "the URL is shown redacted:\n{log}");
}

/// Waits until `s` was last told `user`'s state is `online` (and, with `no_last_seen`,
/// no last seen).
async fn shown_as(s: &parley_client::Session, user: &str, online: bool, no_last_seen: bool) {
    s.wait_for(
        &format!("{user} online={online} no_last_seen={no_last_seen}"),
        LONG,
        |st| {
            st.presence_of(user)
                .is_some_and(|(o, seen)| o == online && (!no_last_seen || seen.is_none()))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}: frames {:?}", s.presence_seen()));
}

async fn status_of(s: &parley_client::Session, user: &str) -> PresenceStatus {
    s.query_presence(&[user], LONG)
        .await
        .expect("presence_result")[0]
        .status
}

fn consent_options() -> Options {
    let mut o = Options::gateways(1);
    o.env.push(("PARLEY_HEARTBEAT_S".into(), "1".into()));
    o.gateway_args = vec!["--presence-group-limit".into(), "3".into()];
    o
}

/// Finding 2, direct conversations: creating one with someone shows you nothing of them
/// until they write back; when they leave, you stop seeing them at once, and creating
/// it again does not bring them back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stranger_sees_no_presence_without_an_answer_and_cannot_rejoin_the_one_who_left() {
    let stack = Processes::start_with("consent-direct", consent_options()).await;
    let g = &stack.gateways[0];
    let (eve_t, vic_t) = (token(g, "eve").await, token(g, "vic").await);
    let (eve_api, vic_api) = (Api::new(g, &eve_t), Api::new(g, &vic_t));
    let direct = eve_api.create_direct("vic").await.unwrap();
    let vic = live(g, &vic_t).await;
    let eve = live(g, &eve_t).await;
    // Eve wrote; Vic did not answer: Eve is told nothing of Vic.
    eve.send(&direct, "e1", "hello vic").await.unwrap();
    vic.wait_messages(&direct, 1, LONG).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(eve.presence_of("vic"), None, "{:?}", eve.presence_seen());
    assert_eq!(status_of(&eve, "vic").await, PresenceStatus::Unknown);
    // Vic has Eve's message: Vic is shown Eve (she wrote).
    shown_as(&vic, "eve", true, true).await;
    assert_eq!(status_of(&vic, "eve").await, PresenceStatus::Online);

    // Vic answers: from then on Eve is shown Vic.
    vic.send(&direct, "v1", "who is this?").await.unwrap();
    shown_as(&eve, "vic", true, true).await;
    assert_eq!(status_of(&eve, "vic").await, PresenceStatus::Online);

    // Vic leaves: Eve is told offline with no last seen, at once, and asks in vain.
    vic_api
        .ok(
            Method::DELETE,
            &format!("/v1/conversations/{direct}/members/vic"),
            None,
        )
        .await
        .unwrap();
    shown_as(&eve, "vic", false, true).await;
    assert_eq!(status_of(&eve, "vic").await, PresenceStatus::Unknown);

    // Eve "creates" the conversation again: Vic stays out.
    let again = eve_api
        .ok(
            Method::POST,
            "/v1/conversations",
            Some(json!({"type": "direct", "members": ["vic"]})),
        )
        .await
        .unwrap();
    assert_eq!(again["created"], false, "{again}");
    assert_eq!(again["rejoined"], false, "{again}");
    assert_eq!(again["other_left"], true, "{again}");
    let view = eve_api
        .ok(Method::GET, &format!("/v1/conversations/{direct}"), None)
        .await
        .unwrap();
    assert_eq!(view["members"], json!(["eve"]), "{view}");
    eve.send(&direct, "e2", "come back").await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(vic.messages(&direct).len(), 2, "nothing reaches who left");
    assert_eq!(status_of(&eve, "vic").await, PresenceStatus::Unknown);
    assert_eq!(eve.presence_of("vic").map(|p| p.0), Some(false));
    // A query over REST says the same.
    let http = eve_api
        .ok(Method::GET, "/v1/presence?user_ids=vic", None)
        .await
        .unwrap();
    assert_eq!(http["users"][0]["status"], "unknown", "{http}");

    // Vic comes back by herself (accepts): she does not read what was sent meanwhile,
    // and is shown to Eve only once she writes again.
    let back = vic_api
        .ok(
            Method::POST,
            "/v1/conversations",
            Some(json!({"type": "direct", "members": ["eve"]})),
        )
        .await
        .unwrap();
    assert_eq!(back["rejoined"], true, "{back}");
    let history = vic_api.all_messages(&direct).await.unwrap();
    assert!(history.iter().all(|m| m.body != "come back"), "{history:?}");
    assert_eq!(status_of(&eve, "vic").await, PresenceStatus::Unknown);
    vic.send(&direct, "v2", "ok, I'm back").await.unwrap();
    shown_as(&eve, "vic", true, true).await;
}

/// Finding 2, groups and hiding: a removal takes effect on presence at its position
/// (each side stops seeing the other), and a user who hides their presence is shown
/// offline with no last seen, and `unknown` to queries, until they show it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_removal_ends_presence_at_once_and_anyone_can_hide_theirs() {
    let stack = Processes::start_with("consent-group", consent_options()).await;
    let g = &stack.gateways[0];
    let (amy_t, bob_t, cat_t) = (
        token(g, "amy").await,
        token(g, "bob").await,
        token(g, "cat").await,
    );
    let amy_api = Api::new(g, &amy_t);
    let cat_api = Api::new(g, &cat_t);
    let group = amy_api
        .create_group("three", &["bob", "cat"])
        .await
        .unwrap();
    let amy = live(g, &amy_t).await;
    let bob = live(g, &bob_t).await;
    let cat = live(g, &cat_t).await;
    // A group within the limit: everyone is shown everyone.
    shown_as(&amy, "bob", true, true).await;
    shown_as(&amy, "cat", true, true).await;
    shown_as(&bob, "amy", true, true).await;

    // Amy removes Bob: both stop seeing each other at once.
    amy_api
        .ok(
            Method::DELETE,
            &format!("/v1/conversations/{group}/members/bob"),
            None,
        )
        .await
        .unwrap();
    shown_as(&amy, "bob", false, true).await;
    shown_as(&bob, "amy", false, true).await;
    assert_eq!(status_of(&amy, "bob").await, PresenceStatus::Unknown);
    assert_eq!(status_of(&bob, "amy").await, PresenceStatus::Unknown);
    // Bob's comings and goings are no longer sent to Amy.
    let before = amy.presence_seen().len();
    bob.close().await;
    let _bob_again = live(g, &bob_t).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        amy.presence_seen()[before..]
            .iter()
            .all(|(u, _, _)| u != "bob"),
        "{:?}",
        amy.presence_seen()
    );

    // Cat hides her presence: Amy is told offline, no last seen; queries say unknown.
    let hidden = cat_api
        .ok(
            Method::PUT,
            "/v1/me/presence",
            Some(json!({"visible": false})),
        )
        .await
        .unwrap();
    assert_eq!(hidden["visible"], false);
    shown_as(&amy, "cat", false, true).await;
    assert_eq!(status_of(&amy, "cat").await, PresenceStatus::Unknown);
    let http = amy_api
        .ok(Method::GET, "/v1/presence?user_ids=cat", None)
        .await
        .unwrap();
    assert_eq!(http["users"][0]["status"], "unknown", "{http}");
    // Her going away and coming back tell nothing either.
    cat.close().await;
    let cat = live(g, &cat_t).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(amy.presence_of("cat"), Some((false, None)));
    let me = cat_api
        .ok(Method::GET, "/v1/me/presence", None)
        .await
        .unwrap();
    assert_eq!(me["visible"], false);
    // She shows it again.
    cat_api
        .ok(
            Method::PUT,
            "/v1/me/presence",
            Some(json!({"visible": true})),
        )
        .await
        .unwrap();
    shown_as(&amy, "cat", true, true).await;
    assert_eq!(status_of(&amy, "cat").await, PresenceStatus::Online);
    let bad = cat_api
        .call(
            Method::PUT,
            "/v1/me/presence",
            Some(json!({"visible": "no"})),
        )
        .await
        .unwrap()
        .expect_err("a bad body");
    assert_eq!(bad.status, 400);
    drop(cat);
}

/// Second review, finding 14: every route that makes the deployment work has a
/// cost-aware limit per user. One user looping on long polls with no wait, presence
/// queries, history pages and settings changes is told to slow down (429 with
/// `Retry-After`), and another user is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_looping_on_expensive_reads_is_slowed_down_and_nobody_else_is() {
    let mut options = Options::gateways(1);
    options.env.extend([
        ("PARLEY_RATE_READS".to_string(), "10".to_string()),
        ("PARLEY_RATE_SETTINGS".to_string(), "10".to_string()),
    ]);
    let stack = Processes::start_with("cost-limits", options).await;
    let g = &stack.gateways[0];
    let (eve_t, amy_t) = (token(g, "eve").await, token(g, "amy").await);
    let (eve, amy) = (Api::new(g, &eve_t), Api::new(g, &amy_t));
    let conv = eve.create_direct("amy").await.unwrap();
    let http = reqwest::Client::new();
    let limited = |path: String, method: Method, body: Option<Value>| {
        let (http, t, g) = (http.clone(), eve_t.clone(), g.clone());
        async move {
            let mut req = http.request(method, format!("{g}{path}")).bearer_auth(&t);
            if let Some(b) = body {
                req = req.json(&b);
            }
            let r = req.send().await.unwrap();
            if r.status().as_u16() != 429 {
                return false;
            }
            assert!(r.headers().contains_key("retry-after"), "{path}");
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"]["code"], "rate_limited", "{path}: {body}");
            true
        }
    };
    // Long polls that do not wait: 5 units each, 10 a second with a burst of 40.
    let mut refused = 0;
    for _ in 0..30 {
        refused += usize::from(limited("/v1/events?timeout_ms=0".into(), Method::GET, None).await);
    }
    assert!(refused > 0, "30 polls in a row were all served");
    // Another user is not slowed down by it.
    amy.history(&conv, None, None, 10).await.expect("amy reads");
    // Presence queries with no session here (20 units) and history pages (1).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut refused = 0;
    for _ in 0..10 {
        refused +=
            usize::from(limited("/v1/presence?user_ids=amy".into(), Method::GET, None).await);
    }
    assert!(refused > 0, "10 cold presence queries were all served");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut refused = 0;
    for _ in 0..100 {
        refused += usize::from(
            limited(
                format!("/v1/conversations/{conv}/messages"),
                Method::GET,
                None,
            )
            .await,
        );
    }
    assert!(refused > 0, "100 history pages in a row were all served");
    // Settings changes: 10 a minute with a burst of 30.
    let mut refused = 0;
    for i in 0..40 {
        let path = format!("/v1/conversations/{conv}/mute");
        refused +=
            usize::from(limited(path, Method::POST, Some(json!({"muted": i % 2 == 0}))).await);
    }
    assert!(refused > 0, "40 mute changes in a row were all made");
}
