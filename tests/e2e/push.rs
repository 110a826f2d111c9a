//! The push role end to end: real broker, real `parley` processes, and a real webhook
//! receiver inside the test (`common::receiver`), which checks every signature.

use crate::common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::receiver::Receiver;
use common::stack::{free_port, Options, Proc, Processes};
use common::{eventually, LONG};
use parley_client::{Api, Session};
use parley_schemas::{decode_any, AnyRecord};
use parley_sequencer::StartAt;
use serde_json::{json, Value};

const PUSH_SECRET: &str = "push-test-secret-0123456789abcdef0123456789";

/// The test's receivers listen on loopback: the deployment allows it by name.
fn options() -> Options {
    let mut o = strict_options();
    o.env.push((
        "PARLEY_PUSH_ALLOW_HOSTS".into(),
        "127.0.0.1,localhost".into(),
    ));
    o
}

/// No host allowed beyond public addresses, as a deployment is by default.
fn strict_options() -> Options {
    let mut o = Options::gateways(1);
    o.env
        .push(("PARLEY_PUSH_SECRET".into(), PUSH_SECRET.into()));
    o.env
        .push(("PARLEY_LOG_LEVEL".into(), "info,parley_push=debug".into()));
    o
}

async fn api(base: &str, user: &str) -> Api {
    Api::new(base, &Api::dev_token(base, user).await.expect("token"))
}

async fn live(base: &str, user: &str) -> Session {
    let token = Api::dev_token(base, user).await.expect("token");
    let s = Session::connect(base, &token).await.expect("connect");
    assert!(s.ready(LONG).await.expect("ready"), "{user} not live");
    s
}

async fn register(api: &Api, url: &str) -> Value {
    api.ok(
        reqwest::Method::POST,
        "/v1/devices",
        Some(json!({"platform": "webhook", "url": url})),
    )
    .await
    .expect("device registered")
}

async fn stats(addr: &str) -> Value {
    reqwest::get(format!("http://{addr}/v1/stats"))
        .await
        .expect("stats")
        .json()
        .await
        .expect("stats json")
}

fn push_args(collapse_ms: &str) -> Vec<&str> {
    vec![
        "--push-collapse-ms",
        collapse_ms,
        "--push-retry-ms",
        "100",
        "--push-retry-max-ms",
        "1000",
        "--push-attempts",
        "1000",
        "--push-breaker-failures",
        "5",
        "--push-breaker-open-ms",
        "2000",
        "--push-give-up-s",
        "20",
    ]
}

/// The dead letters of `stack` as (key, error), once there are `want` of them (or after
/// `timeout`, with what there is).
async fn dead_letters(stack: &Processes, want: usize, timeout: Duration) -> Vec<(String, String)> {
    use futures::StreamExt;
    let log = common::stack::kafka().await;
    let mut letters: Vec<(String, String)> = Vec::new();
    let deadline = Instant::now() + timeout;
    while letters.len() < want && Instant::now() < deadline {
        letters.clear();
        let ends = log.end_offsets(&stack.topics.dead_letters).await.unwrap();
        let from: Vec<(i32, StartAt)> = (0..ends.len() as i32)
            .filter(|p| ends[*p as usize] > 0)
            .map(|p| (p, StartAt::Beginning))
            .collect();
        let total: i64 = ends.iter().sum();
        if total > 0 {
            let mut stream = log.read(&stack.topics.dead_letters, &from).await.unwrap();
            for _ in 0..total {
                let Ok(Some(Ok(r))) =
                    tokio::time::timeout(Duration::from_secs(5), stream.next()).await
                else {
                    break;
                };
                if let Ok(AnyRecord::DeadLetter(d)) = decode_any(r.value.as_deref().unwrap()) {
                    letters.push((String::from_utf8_lossy(&d.key).to_string(), d.error));
                    assert_eq!(d.topic, "push:webhook");
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    letters
}

async fn push_proc(stack: &Processes, http: &str, collapse_ms: &str) -> Proc {
    let p = stack.spawn_push(http, &push_args(collapse_ms));
    common::stack::wait_healthy(&format!("http://{http}")).await;
    p
}

/// Every sent seq is inside exactly one notification's range, and no range overlaps
/// another: nothing missing, nothing notified twice.
fn assert_covers_once(notes: &[parley_push::payload::Notification], seqs: &[i64]) {
    let mut ranges: Vec<(i64, i64)> = notes
        .iter()
        .map(|n| (n.data.first_seq, n.data.last_seq))
        .collect();
    ranges.sort();
    for w in ranges.windows(2) {
        assert!(
            w[0].1 < w[1].0,
            "two notifications cover one message: {ranges:?}"
        );
    }
    for s in seqs {
        assert!(
            ranges.iter().any(|(a, b)| a <= s && s <= b),
            "seq {s} was never notified ({ranges:?})"
        );
    }
    let counted: u32 = notes.iter().map(|n| n.data.count).sum();
    assert_eq!(
        counted as usize,
        seqs.len(),
        "counts add up to the messages"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_users_get_collapsed_signed_pushes_through_outages_and_not_when_live_or_muted() {
    let stack = Processes::start_with("push", options()).await;
    let g = &stack.gateways[0];
    let receiver = Receiver::start(PUSH_SECRET).await;
    let http = free_port().to_string();
    let _push = push_proc(&stack, &http, "1000").await;

    let amy = live(g, "amy").await;
    let amy_api = api(g, "amy").await;
    let bob_api = api(g, "bob").await;
    let device = register(&bob_api, &receiver.url("/hook")).await;
    assert_eq!(device["platform"], "webhook");
    let listed = bob_api
        .ok(reqwest::Method::GET, "/v1/devices", None)
        .await
        .unwrap();
    assert_eq!(listed["devices"].as_array().unwrap().len(), 1, "{listed}");
    for (bad, why) in [
        (
            json!({"platform": "webhook", "url": "https://relay.example/push"}),
            "https",
        ),
        (
            json!({"platform": "webhook", "url": "ftp://relay.example/"}),
            "a scheme",
        ),
        (
            json!({"platform": "apns", "url": "http://relay.example/"}),
            "a platform",
        ),
        (json!({"platform": "webhook", "url": "not a url"}), "a URL"),
    ] {
        let refused = bob_api
            .call(reqwest::Method::POST, "/v1/devices", Some(bad))
            .await
            .unwrap()
            .expect_err(why);
        assert_eq!(refused.status, 400, "{why}: {}", refused.body);
    }
    let listed = bob_api
        .ok(reqwest::Method::GET, "/v1/devices", None)
        .await
        .unwrap();
    assert_eq!(
        listed["devices"].as_array().unwrap().len(),
        1,
        "refusals change nothing"
    );
    let conv = amy_api.create_direct("bob").await.unwrap();

    // 200 messages while Bob is away: collapsed, by the window, into few notifications.
    let started = Instant::now();
    let mut seqs = Vec::new();
    for i in 0..200 {
        seqs.push(
            amy.send(&conv, &format!("c{i}"), &format!("hello {i}"))
                .await
                .unwrap()
                .seq,
        );
    }
    let sending = started.elapsed();
    eventually("200 messages notified", LONG, || async {
        receiver.to("bob").iter().map(|n| n.data.count).sum::<u32>() >= 200
    })
    .await;
    let notes = receiver.to("bob");
    assert_covers_once(&notes, &seqs);
    let windows = sending.as_millis() as usize / 1000 + 2;
    assert!(
        notes.len() <= windows,
        "{} notifications for 200 messages sent in {sending:?} (window 1 s: at most {windows})",
        notes.len()
    );
    let last = notes.last().unwrap();
    assert_eq!(last.notification.title, "amy");
    assert_eq!(last.collapse_key, conv);
    assert!(
        last.notification.badge.unwrap_or(0) >= 1,
        "badge = unread: {last:?}"
    );
    assert_eq!(receiver.with(|r| r.bad_signatures), 0);

    // The receiver goes away for 10 s: retries, then delivery; nothing lost or doubled.
    receiver.kill();
    let before = receiver.to("bob").len();
    for i in 0..5 {
        seqs.push(
            amy.send(&conv, &format!("d{i}"), "while down")
                .await
                .unwrap()
                .seq,
        );
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        receiver.to("bob").len(),
        before,
        "nothing arrives while it is down"
    );
    receiver.restart().await;
    eventually("the outage's messages notified", LONG, || async {
        receiver.to("bob").iter().map(|n| n.data.count).sum::<u32>() >= 205
    })
    .await;
    assert_covers_once(&receiver.to("bob"), &seqs);
    assert!(
        receiver.with(|r| r.copies.values().all(|&c| c == 1)),
        "no id twice"
    );
    let s = stats(&http).await;
    assert!(s["retried"].as_u64().unwrap() > 0, "retries were made: {s}");

    // Muted: no push; unmuted: pushes again.
    bob_api
        .ok(
            reqwest::Method::POST,
            &format!("/v1/conversations/{conv}/mute"),
            Some(json!({})),
        )
        .await
        .expect("mute");
    let notified = receiver.to("bob").len();
    for i in 0..3 {
        amy.send(&conv, &format!("m{i}"), "muted").await.unwrap();
    }
    eventually("the muted jobs were skipped", LONG, || async {
        stats(&http).await["skipped_muted"].as_u64().unwrap() >= 3
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        receiver.to("bob").len(),
        notified,
        "a muted conversation is not pushed"
    );
    // ...unless a message mentions him.
    let mention = amy.send(&conv, "m-at", "@bob wake up").await.unwrap();
    eventually("a mention pushes though muted", LONG, || async {
        receiver
            .to("bob")
            .iter()
            .any(|n| n.data.last_seq >= mention.seq)
    })
    .await;
    bob_api
        .ok(
            reqwest::Method::DELETE,
            &format!("/v1/conversations/{conv}/mute"),
            None,
        )
        .await
        .expect("unmute");

    // Bob is live: no push (the message reaches his session instead).
    let bob = live(g, "bob").await;
    let sent = amy.send(&conv, "live", "you are here").await.unwrap();
    bob.wait_for("the live message", LONG, |s| {
        s.messages(&conv).iter().any(|m| m.seq == sent.seq)
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        receiver
            .to("bob")
            .iter()
            .all(|n| n.data.last_seq < sent.seq),
        "a live user is not pushed"
    );

    // An outsider cannot mute a conversation of others.
    let eve = api(g, "eve").await;
    let refused = eve
        .call(
            reqwest::Method::POST,
            &format!("/v1/conversations/{conv}/mute"),
            Some(json!({})),
        )
        .await
        .unwrap()
        .expect_err("not a member");
    assert_eq!(refused.status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_endpoint_ends_in_the_dead_letter_topic() {
    let stack = Processes::start_with("push-dlq", options()).await;
    let g = &stack.gateways[0];
    let receiver = Receiver::start(PUSH_SECRET).await;
    let http = free_port().to_string();
    let _push = push_proc(&stack, &http, "200").await;
    let amy = live(g, "amy").await;
    let amy_api = api(g, "amy").await;
    // Carol's endpoint refuses for good (410); Dan's fails every time (503) until the
    // retry budget (20 s) is spent.
    register(&api(g, "carol").await, &receiver.url("/gone")).await;
    let dan_api = api(g, "dan").await;
    let other = Receiver::start(PUSH_SECRET).await;
    other.answer_with(503);
    register(&dan_api, &other.url("/hook")).await;
    let to_carol = amy_api.create_direct("carol").await.unwrap();
    let to_dan = amy_api.create_direct("dan").await.unwrap();
    amy.send(&to_carol, "x1", "for carol").await.unwrap();
    amy.send(&to_dan, "x2", "for dan").await.unwrap();

    let letters = dead_letters(&stack, 2, Duration::from_secs(90)).await;
    let users: BTreeSet<&str> = letters.iter().map(|(u, _)| u.as_str()).collect();
    assert_eq!(
        users,
        BTreeSet::from(["carol", "dan"]),
        "dead letters: {letters:?}"
    );
    assert!(other.with(|r| r.refused) >= 2, "dan's endpoint was retried");
    let s = stats(&http).await;
    assert_eq!(s["dead_lettered"].as_u64().unwrap(), 2, "{s}");
    assert_eq!(s["delivered"].as_u64().unwrap(), 0, "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_push_role_loses_no_job_and_sends_none_twice() {
    let stack = Processes::start_with("push-kill", options()).await;
    let g = &stack.gateways[0];
    let receiver = Receiver::start(PUSH_SECRET).await;
    let http = free_port().to_string();
    let mut push = push_proc(&stack, &http, "100").await;
    let amy = live(g, "amy").await;
    let amy_api = api(g, "amy").await;
    register(&api(g, "bob").await, &receiver.url("/hook")).await;
    let conv = amy_api.create_direct("bob").await.unwrap();
    let mut seqs = Vec::new();
    for i in 0..120 {
        if i == 60 {
            push.kill();
        }
        if i == 80 {
            push = push_proc(&stack, &free_port().to_string(), "100").await;
        }
        seqs.push(
            amy.send(&conv, &format!("k{i}"), &format!("msg {i}"))
                .await
                .unwrap()
                .seq,
        );
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let deadline = Instant::now() + LONG;
    while receiver.to("bob").iter().map(|n| n.data.count).sum::<u32>() < 120 {
        assert!(
            Instant::now() < deadline,
            "not every message notified: {:?}, refused {}, bad signatures {}",
            receiver
                .to("bob")
                .iter()
                .map(|n| (n.data.first_seq, n.data.last_seq, n.data.count))
                .collect::<Vec<_>>(),
            receiver.with(|r| r.refused),
            receiver.with(|r| r.bad_signatures)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_covers_once(&receiver.to("bob"), &seqs);
    assert_eq!(receiver.with(|r| r.bad_signatures), 0);
    drop(push);
}

/// Finding 3 of the second review (SSRF): a device URL that points into the
/// deployment's own network is refused when it is registered, whatever way the address
/// is written; a public address is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_urls_into_the_deployments_network_are_refused() {
    let stack = Processes::start_with("push-ssrf", strict_options()).await;
    let g = &stack.gateways[0];
    let bob = api(g, "bob").await;
    let projector = stack
        .projector_url
        .trim_start_matches("http://")
        .to_string();
    for url in [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/".to_string(),
        "http://127.0.0.1:9/hook".into(),
        format!("http://{projector}/v1/status"),
        "http://localhost:8080/v1/devices".into(),
        "http://10.0.0.7/hook".into(),
        "http://172.20.1.1/hook".into(),
        "http://192.168.0.1/hook".into(),
        "http://100.64.0.1/hook".into(),
        "http://0.0.0.0:8080/".into(),
        "http://[::1]:8080/".into(),
        "http://[fd00:ec2::254]/latest/".into(),
        "http://[::ffff:169.254.169.254]/latest/".into(),
        // The URL parser's other spellings of 127.0.0.1.
        "http://2130706433/hook".into(),
        "http://0x7f.1/hook".into(),
    ] {
        let refused = bob
            .call(
                reqwest::Method::POST,
                "/v1/devices",
                Some(json!({"platform": "webhook", "url": url})),
            )
            .await
            .unwrap()
            .expect_err(&url);
        assert_eq!(refused.status, 400, "{url}: {}", refused.body);
        assert_eq!(refused.code(), "bad_request", "{url}: {}", refused.body);
    }
    let listed = bob
        .ok(reqwest::Method::GET, "/v1/devices", None)
        .await
        .unwrap();
    assert!(
        listed["devices"].as_array().unwrap().is_empty(),
        "refusals register nothing: {listed}"
    );
    // A public address is a device (nothing is sent to it here).
    let device = register(&bob, "http://93.184.215.14/hook").await;
    assert_eq!(device["url"], "http://93.184.215.14/hook");
}

/// Finding 3, at connect time: the push role checks the destination again when it
/// connects (a name may resolve elsewhere by then), by its own policy. Here the gateway
/// allows loopback and the push role does not: nothing reaches the receiver, and the
/// notification is dead-lettered as refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_push_role_does_not_connect_where_its_policy_refuses() {
    let stack = Processes::start_with("push-ssrf-connect", options()).await;
    let g = &stack.gateways[0];
    let receiver = Receiver::start(PUSH_SECRET).await;
    let http = free_port().to_string();
    let mut args = push_args("200");
    // Overrides the stack's PARLEY_PUSH_ALLOW_HOSTS=127.0.0.1 for this process only.
    args.extend(["--push-allow-hosts", "relay.invalid"]);
    let _push = stack.spawn_push(&http, &args);
    common::stack::wait_healthy(&format!("http://{http}")).await;
    let amy = live(g, "amy").await;
    register(&api(g, "bob").await, &receiver.url("/hook")).await;
    register(
        &api(g, "bob").await,
        &format!("http://localhost:{}/hook", receiver.addr.port()),
    )
    .await;
    let conv = api(g, "amy").await.create_direct("bob").await.unwrap();
    amy.send(&conv, "s1", "for bob").await.unwrap();
    let letters = dead_letters(&stack, 2, Duration::from_secs(60)).await;
    assert_eq!(letters.len(), 2, "{letters:?}");
    assert!(
        letters.iter().all(
            |(_, why)| why.contains("refused") || why.contains("no address webhooks may go to")
        ),
        "{letters:?}"
    );
    assert!(receiver.to("bob").is_empty(), "nothing reached loopback");
    assert_eq!(receiver.with(|r| r.refused + r.bad_signatures), 0);
}

/// A TCP listener that accepts connections and never answers (a black-holed webhook).
async fn black_hole() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (addr, task)
}

/// Finding 4 of the second review: one user's 20 devices at black-holed addresses and a
/// few messages to them must not stall anyone else's pushes. An unrelated user's
/// notification still arrives within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_users_dead_endpoints_do_not_stall_anyone_elses_push() {
    let stack = Processes::start_with("push-jam", options()).await;
    let g = &stack.gateways[0];
    let receiver = Receiver::start(PUSH_SECRET).await;
    let http = free_port().to_string();
    // The role's defaults, but a short collapse window: requests time out after 5 s,
    // circuits open after 5 failures for 30 s, and a notification is retried for 300 s.
    let _push = stack.spawn_push(&http, &["--push-collapse-ms", "200"]);
    common::stack::wait_healthy(&format!("http://{http}")).await;
    let amy = live(g, "amy").await;
    let amy_api = api(g, "amy").await;
    let mallory = api(g, "mallory").await;
    let mut holes = Vec::new();
    for i in 0..20 {
        let (addr, task) = black_hole().await;
        holes.push(task);
        mallory
            .ok(
                reqwest::Method::POST,
                "/v1/devices",
                Some(json!({"platform": "webhook", "url": format!("http://{addr}/hook"), "device_id": format!("d{i}")})),
            )
            .await
            .expect("a device");
    }
    // Five conversations with mallory: five notifications, each to 20 devices (100
    // requests that hang until they time out, then wait and retry).
    for i in 0..5 {
        let group = amy_api
            .create_group(&format!("jam {i}"), &["mallory"])
            .await
            .unwrap();
        amy.send(&group, &format!("j{i}"), "to the void")
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Bob is away, with a working webhook.
    register(&api(g, "bob").await, &receiver.url("/hook")).await;
    let to_bob = amy_api.create_direct("bob").await.unwrap();
    let sent = Instant::now();
    amy.send(&to_bob, "b1", "for bob").await.unwrap();
    let deadline = sent + Duration::from_secs(10);
    while receiver.to("bob").is_empty() {
        assert!(
            Instant::now() < deadline,
            "bob's push did not arrive within 10 s while mallory's endpoints black-hole: {}",
            stats(&http).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for h in holes {
        h.abort();
    }
}
