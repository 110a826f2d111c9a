//! Two people chat in real time through Kafka: every hop is the real component
//! (gateway, log, fanout-worker, projector) against the real broker.

use crate::common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::stack::{appended, InProcess, Processes};
use parley_client::{Api, Session};
use parley_schemas::frames::MessageView;

const LONG: Duration = Duration::from_secs(60);

async fn user(base: &str, name: &str) -> (Api, Session) {
    let token = Api::dev_token(base, name).await.expect("dev token");
    let session = Session::connect(base, &token).await.expect("connect");
    assert!(
        session.ready(LONG).await.expect("ready"),
        "{name}'s session is not live"
    );
    (Api::new(base, &token), session)
}

/// Sends `n` messages one after another; returns the acknowledged seqs.
async fn send_many(s: &Session, conv: &str, tag: &str, n: usize) -> Vec<i64> {
    let mut seqs = Vec::with_capacity(n);
    for i in 0..n {
        let sent = s
            .send(conv, &format!("{tag}-{i}"), &format!("{tag} says {i}"))
            .await
            .unwrap_or_else(|e| panic!("{tag} send {i}: {e}"));
        seqs.push(sent.seq);
    }
    seqs
}

/// `from`'s messages as `receiver` got them: every one exactly once, in seq order, and
/// exactly the seqs the sender was acknowledged.
fn check_received(receiver: &Session, from: &str, sent: &[i64]) {
    let got: Vec<MessageView> = receiver
        .arrivals()
        .into_iter()
        .filter(|m| m.sender_id == from)
        .collect();
    let seqs: Vec<i64> = got.iter().map(|m| m.seq).collect();
    let have: BTreeSet<i64> = seqs.iter().copied().collect();
    let missing: Vec<(usize, i64)> = sent
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, s)| !have.contains(s))
        .collect();
    assert!(
        missing.is_empty(),
        "{} is missing {from}'s (index, seq) {missing:?}",
        receiver.user()
    );
    assert_eq!(
        seqs.len(),
        sent.len(),
        "{} got {} of {from}'s {} messages",
        receiver.user(),
        seqs.len(),
        sent.len()
    );
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "{} got {from}'s messages out of order",
        receiver.user()
    );
    assert_eq!(
        seqs,
        sent,
        "{} got other seqs than {from} was acknowledged",
        receiver.user()
    );
}

async fn exchange(alice_base: &str, bob_base: &str, n: usize) {
    let (alice_api, alice) = user(alice_base, "alice").await;
    let (_, bob) = user(bob_base, "bob").await;
    let conv = alice_api.create_direct("bob").await.unwrap();

    let (a_seqs, b_seqs) = tokio::join!(
        send_many(&alice, &conv, "alice", n),
        send_many(&bob, &conv, "bob", n)
    );
    // Order within one sender's messages follows the acknowledgements.
    assert!(a_seqs.windows(2).all(|w| w[0] < w[1]));
    bob.wait_arrivals(&conv, "alice", n, LONG)
        .await
        .expect("bob receives everything");
    alice
        .wait_arrivals(&conv, "bob", n, LONG)
        .await
        .expect("alice receives everything");
    // Each holds the whole conversation, its own messages and the peer's, each once.
    assert_eq!(bob.messages(&conv).len(), 2 * n);
    assert_eq!(alice.messages(&conv).len(), 2 * n);
    check_received(&bob, "alice", &a_seqs);
    check_received(&alice, "bob", &b_seqs);

    // History: all 2n messages, in seq order, exactly the acknowledged ones.
    let history = alice_api.all_messages(&conv).await.unwrap();
    let seqs: Vec<i64> = history.iter().map(|m| m.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "history out of order");
    let mut all: Vec<i64> = a_seqs.iter().chain(&b_seqs).copied().collect();
    all.sort();
    assert_eq!(seqs, all);
    // prev_seq chains every message to the one before it.
    for w in history.windows(2) {
        assert_eq!(w[1].prev_seq, Some(w[0].seq));
    }
    assert_eq!(history[0].prev_seq, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_exchange_1000_messages_each_way() {
    let stack = InProcess::start("exchange", 1).await;
    exchange(&stack.gateways[0], &stack.gateways[0], 1000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_exchange_across_separate_processes_and_two_gateways() {
    let stack = Processes::start("processes", 2).await;
    exchange(&stack.gateways[0], &stack.gateways[1], 1000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_20_with_5_online_reaches_exactly_its_online_members() {
    let stack = InProcess::start("group", 2).await;
    let base = |i: usize| stack.gateways[i % 2].clone();
    let members: Vec<String> = (0..20).map(|i| format!("member{i}")).collect();
    let mut online = Vec::new();
    for (i, m) in members.iter().take(5).enumerate() {
        online.push(user(&base(i), m).await);
    }
    let (_, outsider) = user(&base(1), "outsider").await;
    let refs: Vec<&str> = members.iter().skip(1).map(String::as_str).collect();
    let conv = online[0].0.create_group("twenty", &refs).await.unwrap();

    let sent = send_many(&online[0].1, &conv, "member0", 30).await;
    for (_, s) in online.iter().skip(1) {
        s.wait_arrivals(&conv, "member0", 30, LONG)
            .await
            .expect("every online member receives each message");
        check_received(s, "member0", &sent);
    }
    // The outsider, online all along, got nothing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        outsider.arrivals().is_empty(),
        "an outsider received {:?}",
        outsider.arrivals()
    );
    // The fifteen offline members got an inbox entry for each message instead (delivery
    // is at-least-once, so count distinct entries); the online ones got none. The inbox
    // copies are written beside the live deliveries, so the last may land a moment later.
    let offline: BTreeSet<String> = members.iter().skip(5).cloned().collect();
    let expected: BTreeSet<(String, i64)> = offline
        .iter()
        .flat_map(|u| sent.iter().map(move |s| (u.clone(), *s)))
        .collect();
    let mut entries = inbox_entries(&stack).await;
    for _ in 0..50 {
        if entries.len() >= expected.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        entries = inbox_entries(&stack).await;
    }
    assert_eq!(entries, expected);
}

/// Every (user, seq) of the inbox topic.
async fn inbox_entries(stack: &InProcess) -> BTreeSet<(String, i64)> {
    use futures::StreamExt;
    use parley_sequencer::StartAt;
    let topic = &stack.topics.inbox;
    let ends = stack.log.end_offsets(topic).await.unwrap();
    let from: Vec<(i32, StartAt)> = (0..ends.len() as i32)
        .map(|p| (p, StartAt::Beginning))
        .collect();
    let total: i64 = ends.iter().sum();
    let mut stream = stack.log.read(topic, &from).await.unwrap();
    let mut out = BTreeSet::new();
    for _ in 0..total {
        let r = tokio::time::timeout(LONG, stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let e: parley_schemas::InboxEntry =
            parley_schemas::decode(r.value.as_deref().unwrap()).unwrap();
        out.insert((e.user_id, e.seq));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_members_get_clear_errors_and_nothing_is_written() {
    let stack = InProcess::start("nonmember", 1).await;
    let base = &stack.gateways[0];
    let (alice_api, _alice) = user(base, "alice").await;
    let conv = alice_api.create_group("private", &["bob"]).await.unwrap();
    let (eve_api, eve) = user(base, "eve").await;
    // Let the projector see the conversation before counting.
    alice_api.history(&conv, None, None, 10).await.unwrap();
    let before = appended(&*stack.log, &stack.topics.events).await;

    let err = eve
        .send(&conv, "e-1", "let me in")
        .await
        .expect_err("a non-member's send fails");
    assert!(err.to_string().contains("not_member"), "{err}");
    let r = eve_api
        .call(
            reqwest::Method::GET,
            &format!("/v1/conversations/{conv}/messages"),
            None,
        )
        .await
        .unwrap()
        .expect_err("a non-member's history is refused");
    assert_eq!((r.status.as_u16(), r.code()), (403, "not_member"));
    let r = eve_api
        .call(
            reqwest::Method::POST,
            &format!("/v1/conversations/{conv}/members"),
            Some(serde_json::json!({"members": ["eve"]})),
        )
        .await
        .unwrap()
        .expect_err("a non-member cannot add members");
    assert_eq!((r.status.as_u16(), r.code()), (403, "not_member"));
    let r = eve_api
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/conversations/{conv}/members/bob"),
            None,
        )
        .await
        .unwrap()
        .expect_err("a non-member cannot remove members");
    assert_eq!(r.status.as_u16(), 403);
    let err = eve
        .send("no-such-conversation", "e-2", "hello?")
        .await
        .expect_err("unknown conversation");
    // Answered as a conversation one is not in: what exists is not told.
    assert!(err.to_string().contains("not_member"), "{err}");

    // Malformed frames get an error frame and the connection survives.
    eve.send_text("{not json".into()).await.unwrap();
    eve.send_text(r#"{"type":"send","client_msg_id":"x"}"#.into())
        .await
        .unwrap();
    eve.send_text(format!(
        r#"{{"type":"send","client_msg_id":"big","conversation_id":"{conv}","body":"{}"}}"#,
        "x".repeat(70_000)
    ))
    .await
    .unwrap();
    let mut waited = 0;
    while eve.errors().len() < 3 && waited < 100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += 1;
    }
    let codes: BTreeSet<String> = eve
        .errors()
        .iter()
        .map(|e| e["code"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        codes.contains("bad_request") && codes.contains("too_large"),
        "{:?}",
        eve.errors()
    );
    assert!(eve.closed().is_none(), "the connection survives bad frames");
    let err = eve
        .send(&conv, "e-3", "still here")
        .await
        .expect_err("still not a member");
    assert!(err.to_string().contains("not_member"));

    assert_eq!(
        appended(&*stack.log, &stack.topics.events).await,
        before,
        "nothing was written"
    );

    // A bad token is refused at the upgrade.
    let e = Session::connect(base, "not-a-token")
        .await
        .err()
        .expect("refused");
    assert!(e.to_string().contains("401"), "{e}");
    let forged = Api::dev_token(base, "mallory").await.unwrap() + "x";
    assert!(Session::connect(base, &forged).await.is_err());
}
