//! The loss paths of "never missing", each reproduced against separate processes and
//! the real broker: every `sent` names a message history keeps, under the same seq;
//! cursors never stick or step over a hole; sessions become live after a failover; a
//! record the broker refuses does not wedge routing.

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::stack::{appended, Options, Processes};
use common::{eventually, live, token, LONG};
use parley_client::{Api, Session};
use reqwest::Method;
use serde_json::{json, Value};

/// `POST /v1/conversations/{id}/messages`: the `sent` frame, or the refusal.
async fn post(api: &Api, conv: &str, client_msg_id: &str, body: &str) -> Result<Value, Value> {
    let body = json!({"client_msg_id": client_msg_id, "body": body});
    match api
        .call(
            Method::POST,
            &format!("/v1/conversations/{conv}/messages"),
            Some(body),
        )
        .await
        .expect("request")
    {
        Ok(v) => Ok(v),
        Err(r) => Err(json!({"status": r.status.as_u16(), "body": r.body})),
    }
}

/// History of a conversation as message id → seq.
async fn history_seqs(api: &Api, conv: &str) -> BTreeMap<String, i64> {
    api.all_messages(conv)
        .await
        .expect("history")
        .into_iter()
        .map(|m| (m.message_id.to_string(), m.seq))
        .collect()
}

/// Scenario 0: with the projector 3 s behind, the same message is posted to two
/// gateways at once. Both appends reach the log; whatever each caller is told, a `sent`
/// names the seq history keeps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_retries_are_only_ever_told_the_seq_history_keeps() {
    let options = Options {
        projector_args: vec!["--debug-apply-delay-ms".into(), "3000".into()],
        ..Options::gateways(2)
    };
    let stack = Processes::start_with("race", options).await;
    let (g0, g1) = (&stack.gateways[0], &stack.gateways[1]);
    let amy = token(g0, "amy").await;
    let conv = Api::new(g0, &amy).create_direct("bob").await.unwrap();
    let (a0, a1) = (Api::new(g0, &amy), Api::new(g1, &amy));

    let mut replies = Vec::new();
    for i in 0..3 {
        let id = format!("race-{i}");
        let (r0, r1) = tokio::join!(
            post(&a0, &conv, &id, "same message"),
            post(&a1, &conv, &id, "same message")
        );
        replies.push(r0);
        replies.push(r1);
    }
    let mut kept = BTreeMap::new();
    for _ in 0..100 {
        kept = history_seqs(&a0, &conv).await;
        if kept.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(kept.len(), 3, "history keeps each message once: {kept:?}");
    let mut told = 0;
    for r in &replies {
        match r {
            Ok(sent) => {
                told += 1;
                let id = sent["message_id"].as_str().unwrap();
                assert_eq!(
                    kept.get(id).copied(),
                    sent["seq"].as_i64(),
                    "a sent names the seq history keeps: {sent} (history {kept:?})"
                );
            }
            Err(e) => assert_eq!(e["body"]["error"]["code"], "unavailable", "{e}"),
        }
    }
    assert!(told >= 3, "every message was confirmed at least once");
}

/// Scenario 5: Bob's membership is cached at gateway 1 when Amy removes him through
/// gateway 0. His next send must be refused, not acknowledged for a message the log's
/// rules drop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_removed_at_another_gateway_is_never_told_sent() {
    let stack = Processes::start("removed", 2).await;
    let (g0, g1) = (&stack.gateways[0], &stack.gateways[1]);
    let (amy, bob) = (token(g0, "amy").await, token(g1, "bob").await);
    let conv = Api::new(g0, &amy)
        .create_group("team", &["bob"])
        .await
        .unwrap();
    let bob_api = Api::new(g1, &bob);
    post(&bob_api, &conv, "before", "still here")
        .await
        .expect("a member posts");
    Api::new(g0, &amy)
        .ok(
            Method::DELETE,
            &format!("/v1/conversations/{conv}/members/bob"),
            None,
        )
        .await
        .expect("removed");
    let after = post(&bob_api, &conv, "after", "am I still here?").await;
    let kept = history_seqs(&Api::new(g0, &amy), &conv).await;
    assert_eq!(kept.len(), 1, "history keeps only the first: {kept:?}");
    match after {
        Ok(sent) => panic!("sent for a message history does not keep: {sent}"),
        Err(e) => assert_eq!(e["status"], 403, "{e}"),
    }
}

/// Scenario 2: Bob connects while no fanout-worker owns the partitions. His gateway's
/// heartbeats go on. When a worker takes the partitions over, Bob must become live,
/// receive Amy's messages live and be able to sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_opened_while_no_worker_runs_becomes_live_when_one_takes_over() {
    let options = Options {
        gateway_args: vec!["--heartbeat-s".into(), "1".into()],
        ..Options::gateways(1)
    };
    let mut stack = Processes::start_with("ownerless", options).await;
    let g = stack.gateways[0].clone();
    let (amy, bob) = (token(&g, "amy").await, token(&g, "bob").await);
    let conv = Api::new(&g, &amy).create_direct("bob").await.unwrap();
    let a = live(&g, &amy).await;

    stack.fanouts[0].kill();
    // The group forgets the dead worker (6 s session timeout).
    tokio::time::sleep(Duration::from_secs(8)).await;
    let b = Session::connect(&g, &bob).await.expect("connect");
    // Several heartbeats go out while nobody owns the partitions.
    tokio::time::sleep(Duration::from_secs(4)).await;
    stack.restart_fanout(0);
    b.wait_for("bob live", LONG, |s| s.is_live())
        .await
        .expect("bob becomes live once a worker owns the partitions");
    a.send(&conv, "hello", "hello bob").await.expect("sent");
    b.wait_arrivals(&conv, "amy", 1, LONG)
        .await
        .expect("delivered live");
    b.sync(LONG).await.expect("sync works");
}

/// Scenario 12c: a sender's own messages join its linked run, so its cursor follows
/// them and a sync after a reconnect does not fetch them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_senders_cursor_follows_its_own_messages() {
    let stack = Processes::start("owncursor", 1).await;
    let g = &stack.gateways[0];
    let amy = token(g, "amy").await;
    let conv = Api::new(g, &amy).create_direct("bob").await.unwrap();
    let a = live(g, &amy).await;
    let mut last = 0;
    for i in 0..20 {
        last = a.send(&conv, &format!("m{i}"), "mine").await.unwrap().seq;
    }
    a.wait_for("cursor at the last own message", LONG, |s| {
        s.cursors().get(&conv) == Some(&last)
    })
    .await
    .unwrap_or_else(|_| panic!("amy's cursor is {:?}, not {last}", a.cursors()));
}

/// Scenario 12a/b: with the projector behind, a second create of the same direct
/// conversation appends nothing and says so, and the conversation list shows a
/// conversation the caller just created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_are_read_your_writes_with_a_slow_projector() {
    let options = Options {
        projector_args: vec!["--debug-apply-delay-ms".into(), "1500".into()],
        ..Options::gateways(1)
    };
    let stack = Processes::start_with("creates", options).await;
    let g = &stack.gateways[0];
    let amy = Api::new(g, &token(g, "amy").await);
    let log = common::stack::kafka().await;
    let before = appended(&*log, &stack.topics.events).await;
    let body = json!({"type": "direct", "members": ["bob"]});
    let first = amy
        .ok(Method::POST, "/v1/conversations", Some(body.clone()))
        .await
        .unwrap();
    let second = amy
        .ok(Method::POST, "/v1/conversations", Some(body))
        .await
        .unwrap();
    assert_eq!(first["created"], true);
    assert_eq!(second["created"], false, "{second}");
    assert_eq!(
        appended(&*log, &stack.topics.events).await - before,
        1,
        "one creation record"
    );
    let group = amy.create_group("fresh", &["carl"]).await.unwrap();
    let listed = amy.conversations().await.unwrap();
    assert!(
        listed
            .iter()
            .any(|c| c["conversation_id"] == group.as_str()),
        "the list shows what the caller just created: {listed:?}"
    );
}

/// A message that reached bob live is in the newest page of history he asks for next,
/// though the projector is 1.5 s behind the fanout-workers: a page without an upper
/// bound waits for the views to reach the log's end as it was when asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_newest_page_holds_what_just_arrived_live_with_a_slow_projector() {
    let options = Options {
        projector_args: vec!["--debug-apply-delay-ms".into(), "1500".into()],
        ..Options::gateways(1)
    };
    let stack = Processes::start_with("newest-page", options).await;
    let g = &stack.gateways[0];
    let (amy, bob) = (token(g, "amy").await, token(g, "bob").await);
    let conv = Api::new(g, &amy).create_direct("bob").await.unwrap();
    let (a, b) = (live(g, &amy).await, live(g, &bob).await);
    let bob_api = Api::new(g, &bob);
    for i in 0..3 {
        let sent = a
            .send(&conv, &format!("m{i}"), "hello")
            .await
            .expect("sent");
        b.wait_for("bob has it live", LONG, |s| {
            s.messages(&conv).iter().any(|m| m.seq == sent.seq)
        })
        .await
        .expect("delivered live");
        let page = bob_api
            .history(&conv, None, None, 50)
            .await
            .expect("a page");
        let seqs: Vec<i64> = page.messages.iter().map(|m| m.seq).collect();
        assert_eq!(
            seqs.last(),
            Some(&sent.seq),
            "the newest page ends with the message bob just got: {seqs:?}"
        );
        assert_eq!(seqs.len(), i + 1, "{seqs:?}");
    }
}

/// Scenario 6: a retry appended after the router's dedup memory has forgotten its
/// original is routed again; the next message's `prev_seq` then names a seq history
/// never keeps. Bob's cursor must still reach the newest message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_beyond_the_dedup_window_does_not_stick_cursors() {
    let options = Options {
        projector_args: vec!["--debug-apply-delay-ms".into(), "2500".into()],
        fanout_args: vec!["--dedup-window".into(), "2".into()],
        ..Options::gateways(1)
    };
    let stack = Processes::start_with("window", options).await;
    let g = &stack.gateways[0];
    let (amy, bob) = (token(g, "amy").await, token(g, "bob").await);
    let conv = Api::new(g, &amy).create_direct("bob").await.unwrap();
    let a = live(g, &amy).await;
    let b = live(g, &bob).await;
    // m0, then m1..m4, each posted at once (their answers wait for the projector, 2.5 s
    // behind); then a late retry of m0: the projector has not applied m0 yet, so it is
    // appended again, four messages after the original.
    let amy_api = Api::new(g, &amy);
    // The views know the conversation (so sends are appended at once, not after a
    // membership barrier).
    eventually("the conversation in the views", LONG, || async {
        amy_api
            .conversations()
            .await
            .unwrap()
            .iter()
            .any(|c| c["conversation_id"] == conv.as_str())
    })
    .await;
    let mut pending = Vec::new();
    for i in 0..5 {
        let (api, conv) = (amy_api.clone(), conv.clone());
        pending.push(tokio::spawn(async move {
            post(&api, &conv, &format!("m{i}"), "x").await
        }));
        if i == 0 {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let retry = post(&amy_api, &conv, "m0", "x").await;
    for p in pending {
        let _ = p.await.unwrap();
    }
    let last = a.send(&conv, "after", "y").await.expect("sent").seq;
    b.wait_for("bob's cursor at the newest message", LONG, |s| {
        s.cursors().get(&conv) == Some(&last)
    })
    .await
    .unwrap_or_else(|_| panic!("bob's cursor is {:?}, not {last}", b.cursors()));
    let kept = history_seqs(&Api::new(g, &amy), &conv).await;
    assert_eq!(kept.len(), 6, "the retry is not a second message");
    if let Ok(sent) = retry {
        let id = sent["message_id"].as_str().unwrap();
        assert_eq!(kept.get(id).copied(), sent["seq"].as_i64());
    }
    assert_eq!(b.messages(&conv).len(), 6);
}

/// Scenario 8: a delivery the broker refuses (larger than the deliveries topic takes)
/// goes to the dead-letter topic, and the records after it are still routed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_delivery_is_dead_lettered_and_routing_goes_on() {
    let stack = Processes::start("refused", 1).await;
    let g = &stack.gateways[0];
    shrink_max_message_bytes(&stack.topics.deliveries, 4096).await;
    let (amy, bob) = (token(g, "amy").await, token(g, "bob").await);
    let conv = Api::new(g, &amy).create_direct("bob").await.unwrap();
    let a = live(g, &amy).await;
    let b = live(g, &bob).await;
    // Incompressible (the producer compresses batches with lz4).
    let big: String = (0..12_000u64)
        .map(|i| {
            let x = i
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407)
                >> 33;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect();
    a.send(&conv, "big", &big).await.expect("the log takes it");
    a.send(&conv, "small", "hi").await.expect("sent");
    b.wait_for("the small message live", LONG, |s| {
        s.arrivals().iter().any(|m| m.body == "hi")
    })
    .await
    .expect("routing goes on after a refused output");
    let log = common::stack::kafka().await;
    eventually("one dead letter", LONG, || async {
        appended(&*log, &stack.topics.dead_letters).await == 1
    })
    .await;
    // Bob still gets the big one, from history.
    b.sync(LONG).await.expect("sync");
    assert_eq!(b.messages(&conv).len(), 2);
}

async fn shrink_max_message_bytes(topic: &str, bytes: usize) {
    use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::ClientConfig;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", common::bootstrap())
        .create()
        .expect("admin client");
    let value = bytes.to_string();
    let alter = AlterConfig::new(ResourceSpecifier::Topic(topic)).set("max.message.bytes", &value);
    let results = admin
        .alter_configs(&[alter], &AdminOptions::new())
        .await
        .expect("alter configs");
    for r in results {
        r.expect("topic config changed");
    }
    // The change reaches the broker through the metadata log a little later: wait until
    // it says so, or a copy appended meanwhile is taken (and the test waits for nothing).
    let what = format!("max.message.bytes of {topic} at {value}");
    eventually(&what, Duration::from_secs(30), || async {
        let described = admin
            .describe_configs(&[ResourceSpecifier::Topic(topic)], &AdminOptions::new())
            .await
            .expect("describe configs");
        described.into_iter().flatten().any(|r| {
            r.get("max.message.bytes").and_then(|e| e.value.as_deref()) == Some(value.as_str())
        })
    })
    .await;
}

/// Sends from `sender` until `user`'s inbox holds an entry (at most `timeout`).
async fn until_inbox(sender: &Session, conv: &str, user: &Api, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut i = 0;
    loop {
        sender
            .send(conv, &format!("probe-{i}"), "are you there?")
            .await
            .expect("sent");
        i += 1;
        if !user.inbox().await.unwrap().is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the user still counts as online"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Scenario 4a: a client that vanishes (its socket stays open, it never answers a
/// ping) is closed and counted offline within the idle timeout (3 pings).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_client_is_closed_and_counted_offline() {
    let options = Options {
        gateway_args: vec!["--ping-interval-s".into(), "1".into()],
        ..Options::gateways(1)
    };
    let stack = Processes::start_with("vanished", options).await;
    let g = &stack.gateways[0];
    let (amy, bob) = (token(g, "amy").await, token(g, "bob").await);
    let conv = Api::new(g, &amy).create_direct("bob").await.unwrap();
    let a = live(g, &amy).await;
    let _silent = common::raw_socket(g, &bob).await;
    // Bob is online: Amy's first message is delivered to his socket, not his inbox.
    tokio::time::sleep(Duration::from_secs(1)).await;
    until_inbox(&a, &conv, &Api::new(g, &bob), Duration::from_secs(20)).await;
}

/// Scenario 4b: a client that keeps talking but stops reading. The gateway's writes
/// to it block once the socket buffers are full; the write timeout closes it, and it
/// counts as offline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_closed_and_counted_offline() {
    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let options = Options {
        gateway_args: vec!["--write-timeout-s".into(), "2".into()],
        ..Options::gateways(1)
    };
    let stack = Processes::start_with("unread", options).await;
    let g = &stack.gateways[0];
    let (amy, bob) = (token(g, "amy").await, token(g, "bob").await);
    let conv = Api::new(g, &amy).create_direct("bob").await.unwrap();
    let a = live(g, &amy).await;
    let mut deaf = common::raw_socket(g, &bob).await;
    let talking = tokio::spawn(async move {
        // Frames keep coming from Bob, so he is never idle; he reads nothing. (Bounded:
        // the test aborts it long before.)
        for _ in 0..480 {
            let ping = Message::Text(r#"{"type":"ping"}"#.into());
            if deaf.send(ping).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Fewer frames than the slow-consumer queue holds (1,024), more bytes than the
    // sockets buffer (the gateway's send buffer grows to 4 MiB at most).
    let body = "z".repeat(15_000);
    let mut pending = Vec::new();
    for i in 0..350 {
        pending.push(
            a.send_nowait(&conv, &format!("big-{i}"), &body)
                .await
                .unwrap(),
        );
    }
    for p in pending {
        p.await.unwrap().expect("sent");
    }
    until_inbox(&a, &conv, &Api::new(g, &bob), Duration::from_secs(30)).await;
    talking.abort();
}

/// Scenario 3: Bob's gateway hangs (SIGSTOP) longer than the presence TTL, so the
/// workers route Amy's message to his inbox; when it resumes, Bob's session must not
/// stay silently deaf: it receives the message or is closed (then it resyncs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_whose_presence_lapsed_is_closed_not_left_deaf() {
    let options = Options {
        gateway_args: vec!["--heartbeat-s".into(), "1".into()],
        ..Options::gateways(2)
    };
    let stack = Processes::start_with("lapse", options).await;
    let (g0, g1) = (&stack.gateways[0], &stack.gateways[1]);
    let (amy, bob) = (token(g0, "amy").await, token(g1, "bob").await);
    let conv = Api::new(g0, &amy).create_direct("bob").await.unwrap();
    let a = live(g0, &amy).await;
    let b = live(g1, &bob).await;
    stack.gateway_procs[1].pause();
    // TTL is 3 s: after 5 s the workers see Bob offline.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let sent = a.send(&conv, "while-hung", "hello?").await.expect("sent");
    let bob_api = Api::new(g0, &bob);
    eventually("the message in bob's inbox", LONG, || async {
        !bob_api.inbox().await.unwrap().is_empty()
    })
    .await;
    stack.gateway_procs[1].resume();
    let outcome = b
        .wait_for("the message, or a close", Duration::from_secs(20), |s| {
            s.closed().is_some() || s.messages(&conv).iter().any(|m| m.seq == sent.seq)
        })
        .await;
    assert!(
        outcome.is_ok(),
        "bob's session neither got the message nor was closed: it is deaf"
    );
    if let Some(reason) = b.closed() {
        assert!(reason.contains("presence_lapsed"), "{reason}");
    }
}

/// Scenario 9: a presence record that outlives its session (here written by hand, as a
/// stale heartbeat would) routes Amy's message to a gateway where Bob has no session.
/// The message must reach Bob's inbox, not vanish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_routed_to_a_gateway_without_the_users_session_reaches_the_inbox() {
    use parley_schemas::{encode, now_millis, Meta, PresenceUpdated};
    let stack = Processes::start("ghost", 2).await;
    let g0 = &stack.gateways[0];
    let (amy, bob) = (token(g0, "amy").await, token(g0, "bob").await);
    let conv = Api::new(g0, &amy).create_direct("bob").await.unwrap();
    let a = live(g0, &amy).await;
    let ghost = PresenceUpdated {
        meta: Meta::new("gateway:1"),
        user_id: "bob".into(),
        gateway_slot: 1,
        sessions: 1,
        expires_at: now_millis() + 120_000,
        ack: false,
    };
    let log = common::stack::kafka().await;
    log.append(
        &stack.topics.presence,
        PresenceUpdated::key("bob", 1).as_bytes(),
        Some(&encode(&ghost).unwrap()),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let sent = a.send(&conv, "to-a-ghost", "anyone?").await.expect("sent");
    let bob_api = Api::new(g0, &bob);
    eventually("the message in bob's inbox", LONG, || async {
        bob_api
            .inbox()
            .await
            .unwrap()
            .iter()
            .any(|e| e["seq"].as_i64() == Some(sent.seq))
    })
    .await;
}

/// Scenario 10: a second gateway started with the same `--gateway-id` takes the slot
/// over; the first stops (with an error saying why) instead of both tombstoning each
/// other's users, and clients of the slot keep working through the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_gateway_with_the_same_id_fences_the_first() {
    let mut stack = Processes::start("fence", 1).await;
    let g = stack.gateways[0].clone();
    let (amy, bob) = (token(&g, "amy").await, token(&g, "bob").await);
    let conv = Api::new(&g, &amy).create_direct("bob").await.unwrap();
    let old = live(&g, &bob).await;

    let addr = common::stack::free_port().to_string();
    let mut newer = stack.spawn_gateway_at(0, &addr);
    let g2 = format!("http://{addr}");
    common::stack::wait_healthy(&g2).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = stack.gateway_procs[0].exited() {
            break s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first gateway still runs"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(!status.success(), "it stops with an error");
    old.wait_closed(LONG)
        .await
        .expect("its sessions are closed");
    assert!(newer.exited().is_none(), "the newer one keeps the slot");

    let a = live(&g2, &amy).await;
    let b = live(&g2, &bob).await;
    a.send(&conv, "after-fence", "hi").await.expect("sent");
    b.wait_arrivals(&conv, "amy", 1, LONG)
        .await
        .expect("delivered through the new gateway");
    newer.kill();
}

/// Scenario 1: a worker takes a partition over from a projector snapshot that is ahead
/// of the committed offset, and routes the records in between again without knowing
/// their predecessors. A client that never held the conversation's start must not
/// take those messages as linked: its cursor never steps over a message it lacks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_from_a_snapshot_ahead_never_moves_a_cursor_over_a_hole() {
    let options = Options {
        // Offsets are committed only when the worker stops cleanly.
        fanout_args: vec!["--commit-interval-ms".into(), "3600000".into()],
        ..Options::gateways(1)
    };
    let mut stack = Processes::start_with("takeover", options).await;
    let g = stack.gateways[0].clone();
    let (amy, bob) = (token(&g, "amy").await, token(&g, "bob").await);
    let conv = Api::new(&g, &amy).create_direct("bob").await.unwrap();
    let amy_api = Api::new(&g, &amy);
    let a = live(&g, &amy).await;
    for i in 0..5 {
        a.send(&conv, &format!("early-{i}"), "early").await.unwrap();
    }
    // A clean stop commits past the early ones.
    stack.fanouts[0].stop();
    stack.restart_fanout(0);
    let after_restart = live(&g, &amy).await;
    drop(after_restart);
    // The burst is routed (to Bob's inbox: he is offline) but never committed.
    let mut last = 0;
    for i in 0..20 {
        last = a
            .send(&conv, &format!("burst-{i}"), "burst")
            .await
            .unwrap()
            .seq;
    }
    let bob_api = Api::new(&g, &bob);
    eventually("the burst in bob's inbox", LONG, || async {
        bob_api.inbox().await.unwrap().len() >= 25
    })
    .await;
    // Bob connects (live, no sync); then the worker dies and its successor takes over
    // from the committed offset with a projector snapshot that has the whole burst.
    let b = live(&g, &bob).await;
    stack.fanouts[0].kill();
    stack.restart_fanout(0);
    b.wait_for("the burst routed again", LONG, |s| !s.arrivals().is_empty())
        .await
        .expect("the burst is routed again");
    let history = history_seqs(&amy_api, &conv).await;
    let mut want: Vec<i64> = history.values().copied().collect();
    want.sort_unstable();
    assert_eq!(want.len(), 25);
    b.wait_for("bob holds all 25", LONG, |s| s.messages(&conv).len() == 25)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "bob holds {} messages with cursor {:?}: the hole before the burst was never filled",
                b.messages(&conv).len(),
                b.cursors()
            )
        });
    let held: Vec<i64> = b.messages(&conv).iter().map(|m| m.seq).collect();
    assert_eq!(held, want);
    assert_eq!(b.cursors().get(&conv), Some(&last));
}

/// The value of the gauge `name` on `base`'s `/metrics`, if it is there.
async fn gauge(base: &str, name: &str) -> Option<f64> {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.split_whitespace().last()?.parse().ok())
}

/// Second review, finding 11: a send that registered for its routed copy and whose
/// append then failed (here: the log refuses a record that large) leaves no waiter
/// behind. `parley_echo_waiters` comes back to 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_append_leaves_no_waiter_for_its_copy() {
    let stack = Processes::start("echo-leak", 1).await;
    let g = &stack.gateways[0];
    let (amy, bob) = (token(g, "amy").await, token(g, "bob").await);
    let conv = Api::new(g, &amy).create_direct("bob").await.unwrap();
    let a = live(g, &amy).await;
    let _b = live(g, &bob).await;
    a.send(&conv, "ok", "fits").await.expect("sent");
    shrink_max_message_bytes(&stack.topics.events, 2048).await;
    // Letters that do not compress (the limit is on the compressed batch).
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let big: String = (0..12_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect();
    for i in 0..20 {
        let refused = a.send(&conv, &format!("big-{i}"), &big).await;
        assert!(refused.is_err(), "the log took {i}: {refused:?}");
    }
    eventually("no send waits for a copy", LONG, || async {
        gauge(g, "parley_echo_waiters").await == Some(0.0)
    })
    .await;
}
