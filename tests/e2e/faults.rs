//! Crashes under continuous traffic: gateways and fanout-workers are SIGKILLed while
//! clients chat, and every client still ends up holding every acknowledged message of
//! its conversations, in order, each once.

use crate::common;

use std::time::Duration;

use common::chat::{self, Member};
use common::stack::{Options, Processes};
use common::{live, token, LONG};
use parley_client::Api;
use tokio_util::sync::CancellationToken;

/// Four users on two gateways, in two direct conversations and one group.
async fn members(stack: &Processes) -> Vec<Member> {
    let g = &stack.gateways[0];
    let mut tokens = Vec::new();
    for u in ["u0", "u1", "u2", "u3"] {
        tokens.push(Api::dev_token(g, u).await.expect("token"));
    }
    let api = |i: usize| Api::new(g, &tokens[i]);
    let d01 = api(0).create_direct("u1").await.unwrap();
    let d23 = api(2).create_direct("u3").await.unwrap();
    let group = api(0)
        .create_group("all", &["u1", "u2", "u3"])
        .await
        .unwrap();
    (0..4)
        .map(|i| Member {
            user: format!("u{i}"),
            token: tokens[i].clone(),
            conversations: vec![if i < 2 { d01.clone() } else { d23.clone() }, group.clone()],
            home: i % stack.gateways.len(),
        })
        .collect()
}

fn start_clients(
    stack: &Processes,
    members: &[Member],
    sending: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<chat::Outcome>> {
    let (every, settle) = (Duration::from_millis(40), Duration::from_secs(45));
    chat::start(&stack.gateways, members, sending, every, settle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_gateways_lose_no_acked_message() {
    let mut stack = Processes::start("gwcrash", 2).await;
    let members = members(&stack).await;
    let sending = CancellationToken::new();
    let clients = start_clients(&stack, &members, &sending);

    // Kill a gateway (SIGKILL) three times, alternating, each brought back a second later.
    for round in 0..3 {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let victim = round % 2;
        stack.gateway_procs[victim].kill();
        tokio::time::sleep(Duration::from_secs(1)).await;
        stack.restart_gateway(victim).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    sending.cancel();

    let mut outcomes = Vec::new();
    for c in clients {
        outcomes.push(c.await.expect("client task"));
    }
    let reconnects: usize = outcomes.iter().map(|o| o.reconnects).sum();
    let acked: usize = outcomes.iter().map(|o| o.acked.len()).sum();
    eprintln!("{acked} messages acked, {reconnects} reconnects");
    assert!(
        reconnects >= 3,
        "the kills should have cut sessions ({reconnects})"
    );
    chat::check(&members, &outcomes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_fanout_worker_is_replaced_by_the_other() {
    let options = Options {
        fanout_workers: 2,
        ..Options::gateways(2)
    };
    let mut stack = Processes::start_with("fancrash", options).await;
    let members = members(&stack).await;
    let sending = CancellationToken::new();
    let clients = start_clients(&stack, &members, &sending);

    tokio::time::sleep(Duration::from_secs(4)).await;
    stack.fanouts[0].kill();
    // The group notices after its session timeout (6 s) and hands the partitions over.
    tokio::time::sleep(Duration::from_secs(12)).await;
    sending.cancel();

    let mut outcomes = Vec::new();
    for c in clients {
        outcomes.push(c.await.expect("client task"));
    }
    chat::check(&members, &outcomes);
    // Delivery went on live: the clients never had to reconnect.
    let reconnects: usize = outcomes.iter().map(|o| o.reconnects).sum();
    assert_eq!(reconnects, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_gateway_ends_the_presence_its_crash_left() {
    let mut stack = Processes::start("stalepresence", 2).await;
    let (g0, g1) = (stack.gateways[0].clone(), stack.gateways[1].clone());
    let amy = Api::dev_token(&g0, "amy").await.unwrap();
    let bob = Api::dev_token(&g0, "bob").await.unwrap();
    let conv = Api::new(&g0, &amy).create_direct("bob").await.unwrap();
    let b = parley_client::Session::connect(&g1, &bob).await.unwrap();
    assert!(b.ready(Duration::from_secs(60)).await.unwrap());

    // Bob's gateway crashes; he does not come back. Its restart ends his presence, so
    // a message to him lands in his inbox at once, not after his record's 30 s TTL.
    stack.gateway_procs[1].kill();
    stack.restart_gateway(1).await;
    let a = parley_client::Session::connect(&g0, &amy).await.unwrap();
    let bob_api = Api::new(&g0, &bob);
    // Well within the TTL, a message to Bob lands in his inbox (Amy sends until one
    // does: the fanout-worker applies the tombstones a moment after the restart).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    for n in 0.. {
        a.send(&conv, &format!("after-crash-{n}"), "are you there?")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        if !bob_api.inbox().await.unwrap().is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no inbox entry: bob still counted as online at the crashed gateway"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_a_connected_user_online_past_the_ttl() {
    // Heartbeat every 2 s: a presence record lives 6 s unless refreshed.
    let options = Options {
        gateway_args: vec!["--heartbeat-s".into(), "2".into()],
        ..Options::gateways(1)
    };
    let stack = Processes::start_with("heartbeat", options).await;
    let g = &stack.gateways[0];
    let (conv, a, b, bob) = direct_pair(g).await;

    // Twice the TTL later, Bob is still online: the message reaches him live and
    // leaves nothing in his inbox.
    tokio::time::sleep(Duration::from_secs(13)).await;
    a.send(&conv, "still-there", "hi").await.unwrap();
    b.wait_arrivals(&conv, "amy", 1, Duration::from_secs(30))
        .await
        .expect("delivered live");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(Api::new(g, &bob).inbox().await.unwrap().is_empty());
}

/// A first send is appended and confirmed without asking the views: with the
/// projector hung, a member's messages still reach the other member live, and their
/// `sent` replies (confirmed by the copy routed back to the sender's gateway) come too,
/// in send order, naming the seqs the messages arrived with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_projector_does_not_hold_up_delivery() {
    let stack = Processes::start("hungviews", 1).await;
    let g = &stack.gateways[0];
    let (conv, a, b, _) = direct_pair(g).await;
    // The gateway now knows Amy is a member (for a few seconds).
    a.send(&conv, "warm", "hi").await.unwrap();

    stack.projectors[0].proc.pause();
    let mut replies = Vec::new();
    for i in 0..5 {
        let cmid = format!("hung-{i}");
        replies.push(
            a.send_nowait(&conv, &cmid, "while the views hang")
                .await
                .unwrap(),
        );
    }
    let delivered = b
        .wait_arrivals(&conv, "amy", 6, Duration::from_secs(10))
        .await;
    let mut answered = Vec::new();
    for rx in replies {
        answered.push(tokio::time::timeout(Duration::from_secs(10), rx).await);
    }
    stack.projectors[0].proc.resume();
    delivered.expect("delivered while the projector hung");

    let arrived: Vec<i64> = b.messages(&conv).iter().map(|m| m.seq).collect();
    let mut last = 0;
    for a in answered {
        let sent = a
            .expect("answered while the projector hung")
            .unwrap()
            .expect("sent");
        assert!(sent.seq > last, "seqs in send order");
        assert!(arrived.contains(&sent.seq), "sent names a seq bob holds");
        last = sent.seq;
    }
}

/// A member removed on one gateway cannot get `sent` for a message on another, where
/// its membership was cached a moment before: the rules drop the message, so no copy
/// is routed back, and the views say it is kept nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_never_gets_sent_on_another_gateway() {
    let stack = Processes::start("removedsend", 2).await;
    let (g0, g1) = (&stack.gateways[0], &stack.gateways[1]);
    let amy = Api::dev_token(g0, "amy").await.unwrap();
    let bob = Api::dev_token(g1, "bob").await.unwrap();
    let group = Api::new(g0, &amy)
        .create_group("g", &["bob", "cat"])
        .await
        .unwrap();
    let b = parley_client::Session::connect(g1, &bob).await.unwrap();
    assert!(b.ready(Duration::from_secs(60)).await.unwrap());
    // Gateway 1 now holds bob's membership in its cache.
    let before = b.send(&group, "before", "still in").await.expect("sent");

    let removed = Api::new(g0, &amy)
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/conversations/{group}/members/bob"),
            None,
        )
        .await
        .unwrap();
    assert!(removed.is_ok(), "{removed:?}");
    // At once, and then for a while: never `sent`.
    for i in 0..5 {
        match b.send(&group, &format!("after-{i}"), "removed").await {
            Ok(sent) => panic!("a removed member got sent: {sent:?}"),
            Err(parley_client::SessionError::Server { code, .. }) => {
                assert!(
                    code == "not_member" || code == "unavailable",
                    "refused with {code}"
                );
            }
            Err(e) => panic!("send failed otherwise: {e}"),
        }
    }
    let history = Api::new(g0, &amy).all_messages(&group).await.unwrap();
    let ids: Vec<_> = history.iter().map(|m| m.message_id).collect();
    assert_eq!(ids, vec![before.message_id], "history keeps only the first");
}

/// Amy and Bob in a direct conversation, each with a live session on gateway `g`: the
/// conversation, Amy's session, Bob's session and Bob's token.
async fn direct_pair(
    g: &str,
) -> (
    String,
    parley_client::Session,
    parley_client::Session,
    String,
) {
    let amy = Api::dev_token(g, "amy").await.unwrap();
    let bob = Api::dev_token(g, "bob").await.unwrap();
    let conv = Api::new(g, &amy).create_direct("bob").await.unwrap();
    let b = parley_client::Session::connect(g, &bob).await.unwrap();
    assert!(b.ready(Duration::from_secs(60)).await.unwrap());
    let a = parley_client::Session::connect(g, &amy).await.unwrap();
    assert!(a.ready(Duration::from_secs(60)).await.unwrap());
    (conv, a, b, bob)
}

/// Taking partitions over does not stop the world: while the surviving fanout-worker
/// warms the partitions of a killed one (slowly: 6 s each here), the partitions it
/// owned already keep routing live. Conversations sit on every partition; at least
/// those of the survivor's own partitions must never wait long, and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_takeover_does_not_hold_up_the_other_partitions() {
    let options = Options {
        fanout_workers: 2,
        fanout_args: vec!["--debug-warm-delay-ms".into(), "6000".into()],
        ..Options::gateways(1)
    };
    let mut stack = Processes::start_with("slowwarm", options).await;
    let g = stack.gateways[0].clone();
    let partitions = common::stack::PARTITIONS;
    // One direct conversation on each partition of events.
    let amy = Api::dev_token(&g, "amy").await.unwrap();
    let mut convs: Vec<(String, String)> = Vec::new();
    let mut covered = std::collections::BTreeSet::new();
    for i in 0..60 {
        let partner = format!("q{i}");
        let c = Api::new(&g, &amy).create_direct(&partner).await.unwrap();
        let p = parley_sequencer::partition::partition_for_key(c.as_bytes(), partitions);
        if covered.insert(p) {
            convs.push((partner, c));
        }
        if covered.len() == partitions as usize {
            break;
        }
    }
    assert_eq!(
        covered.len(),
        partitions as usize,
        "a conversation per partition"
    );
    let a = common::live(&g, &amy).await;
    let mut taps = Vec::new();
    let mut sessions = Vec::new();
    for (partner, _) in &convs {
        let t = Api::dev_token(&g, partner).await.unwrap();
        let s = common::live(&g, &t).await;
        taps.push(s.tap());
        sessions.push(s);
    }

    // Both workers route partitions (the second took its share over from the first).
    common::eventually(
        "the second worker owns partitions",
        common::LONG,
        || async { stack.fanouts[1].log_text().contains("partition taken over") },
    )
    .await;
    // Kill one worker; the other takes its partitions over after the session timeout
    // (6 s), each warm-up taking 6 s more. Meanwhile every conversation gets a message
    // every 300 ms for 24 s.
    stack.fanouts[0].kill();
    let started = std::time::Instant::now();
    let mut sent_at = std::collections::HashMap::new();
    let mut n = 0;
    while started.elapsed() < Duration::from_secs(24) {
        for (_, c) in &convs {
            n += 1;
            let body = format!("m{n}");
            sent_at.insert(body.clone(), std::time::Instant::now());
            drop(a.send_nowait(c, &format!("slow-{n}"), &body).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Everything arrives; the worst wait per conversation.
    let mut worst = Vec::new();
    for (i, tap) in taps.iter_mut().enumerate() {
        let want = sent_at.len() / convs.len();
        let mut seen = std::collections::HashSet::new();
        let mut max = Duration::ZERO;
        while seen.len() < want {
            let got = seen.len();
            let (at, m) = tokio::time::timeout(Duration::from_secs(60), tap.recv())
                .await
                .unwrap_or_else(|_| panic!("conversation {i}: {got} of {want} arrived"))
                .unwrap();
            if let Some(t) = sent_at.get(&m.body) {
                if seen.insert(m.body.clone()) {
                    max = max.max(at.duration_since(*t));
                }
            }
        }
        worst.push(max);
    }
    eprintln!("worst wait per conversation: {worst:?}");
    let best = worst.iter().min().unwrap();
    assert!(
        *best < Duration::from_secs(3),
        "every partition waited for the takeover: {worst:?}"
    );
}

/// Second review, finding 8: a fanout-worker that takes a partition over from the
/// projector's snapshot starts with the dedup window the one before had. A resend of a
/// message from before the takeover, not marked as a retry and through another gateway
/// (which has not seen its id), is not routed again under a second seq: recipients get
/// no second copy, and the sender's `sent` names the seq history keeps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resend_after_a_fanout_takeover_is_not_routed_again() {
    let mut stack = Processes::start("takeover-dedup", 2).await;
    let (g0, g1) = (stack.gateways[0].clone(), stack.gateways[1].clone());
    let (amy_t, bob_t) = (token(&g0, "amy").await, token(&g0, "bob").await);
    let conv = Api::new(&g0, &amy_t).create_direct("bob").await.unwrap();
    let bob = live(&g0, &bob_t).await;
    // Amy sends over REST on g0.
    let first = Api::new(&g0, &amy_t)
        .ok(
            reqwest::Method::POST,
            &format!("/v1/conversations/{conv}/messages"),
            Some(serde_json::json!({"client_msg_id": "x", "body": "once"})),
        )
        .await
        .unwrap();
    let seq = first["seq"].as_i64().unwrap();
    bob.wait_messages(&conv, 1, LONG).await.unwrap();
    // The worker commits past it, then dies; the next one takes over from the snapshot.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stack.restart_fanout(0);
    let amy = live(&g1, &amy_t).await;
    amy.send(&conv, "probe", "the new worker routes")
        .await
        .unwrap();
    bob.wait_messages(&conv, 2, LONG).await.unwrap();

    // The resend, unmarked (this session never sent "x"), on g1 (which never saw the id).
    let resent = amy.send(&conv, "x", "once").await.unwrap();
    assert_eq!(resent.seq, seq, "the sender's `sent` names history's seq");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let at_bob: Vec<i64> = bob
        .arrivals()
        .iter()
        .filter(|m| m.body == "once")
        .map(|m| m.seq)
        .collect();
    assert!(
        at_bob.iter().all(|s| *s == seq),
        "bob got the resend under another seq: {at_bob:?} (history keeps {seq})"
    );
    let history = Api::new(&g0, &amy_t).all_messages(&conv).await.unwrap();
    assert_eq!(
        history.iter().filter(|m| m.body == "once").count(),
        1,
        "{history:?}"
    );
}

/// Second review, finding 9: `receipts` is compacted per (conversation, member, kind),
/// so the newest record of a key must carry the highest mark. A session acks 50 and
/// then 40 at once, while the views lag (they cannot tell the gateway about the 50):
/// the key's newest record in the log must still say 50.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lower_receipt_never_ends_up_last_in_the_log() {
    use futures::StreamExt;
    let options = Options {
        projector_args: vec!["--debug-apply-delay-ms".into(), "1500".into()],
        ..Options::gateways(1)
    };
    let stack = Processes::start_with("receipt-marks", options).await;
    let g = &stack.gateways[0];
    let (amy_t, bob_t) = (token(g, "amy").await, token(g, "bob").await);
    let amy_api = Api::new(g, &amy_t);
    let amy = live(g, &amy_t).await;
    let bob = live(g, &bob_t).await;
    let mut convs = Vec::new();
    for i in 0..6 {
        let conv = amy_api
            .create_group(&format!("g{i}"), &["bob"])
            .await
            .unwrap();
        let mut seqs = Vec::new();
        for j in 0..3 {
            seqs.push(
                amy.send(&conv, &format!("{i}-{j}"), "hi")
                    .await
                    .unwrap()
                    .seq,
            );
        }
        convs.push((conv, seqs[0], seqs[2]));
    }
    // The high mark, then the low one, of every conversation, as fast as they go.
    for (conv, low, high) in &convs {
        for seq in [high, low] {
            bob.send_json(serde_json::json!({"type": "ack", "conversation_id": conv, "seq": seq}))
                .await
                .unwrap();
        }
    }
    // The receipts (and any repairs) reach the log.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(bob.errors().is_empty(), "{:?}", bob.errors());
    let log = common::stack::kafka().await;
    let topic = &stack.topics.receipts;
    let ends = log.end_offsets(topic).await.unwrap();
    let from: Vec<(i32, parley_sequencer::StartAt)> = (0..ends.len() as i32)
        .filter(|p| ends[*p as usize] > 0)
        .map(|p| (p, parley_sequencer::StartAt::Beginning))
        .collect();
    let total: i64 = ends.iter().sum();
    let mut stream = log.read(topic, &from).await.unwrap();
    let mut newest: std::collections::HashMap<String, (i64, i64)> = Default::default();
    for _ in 0..total {
        let r = tokio::time::timeout(LONG, stream.next())
            .await
            .expect("a record")
            .expect("a record")
            .expect("a record");
        let key = String::from_utf8_lossy(r.key.as_deref().unwrap()).to_string();
        let Ok(parley_schemas::AnyRecord::ReceiptRecorded(rec)) =
            parley_schemas::decode_any(r.value.as_deref().unwrap())
        else {
            continue;
        };
        let e = newest.entry(key).or_insert((-1, 0));
        if r.offset > e.0 {
            *e = (r.offset, rec.up_to_seq);
        }
    }
    for (conv, _, high) in &convs {
        let key = format!("{conv}/bob/delivered");
        assert_eq!(
            newest.get(&key).map(|(_, mark)| *mark),
            Some(*high),
            "the newest record of {key} (compaction keeps it): {newest:?}"
        );
    }
}

/// Second review, finding 12: a fanout-worker taking partitions over holds the records
/// that arrive for them meanwhile, up to a bound. It used to stop reading the log once
/// the bound was reached, and reading is its only poll: a warm-up that outlasts
/// `max.poll.interval.ms` (a whole log scanned with the projector down) got it evicted
/// from the group, and each new owner could repeat the cycle. Here the warm-up takes
/// 20 s, the poll interval is 8 s, the bound 40 records, and messages keep coming: the
/// worker must stay in the group, and every message must be delivered soon after the
/// warm-up ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_warm_up_does_not_get_the_worker_evicted() {
    let options = Options {
        fanout_workers: 2,
        fanout_args: [
            "--debug-warm-delay-ms",
            "20000",
            "--hold-max",
            "40",
            "--max-poll-interval-ms",
            "8000",
        ]
        .map(String::from)
        .to_vec(),
        ..Options::gateways(1)
    };
    let mut stack = Processes::start_with("long-warm-up", options).await;
    let g = stack.gateways[0].clone();
    let (amy_t, bob_t) = (token(&g, "amy").await, token(&g, "bob").await);
    let amy_api = Api::new(&g, &amy_t);
    // Conversations over every partition, each with a message (committed offsets: a
    // warm-up with something to resume from is the one that is slowed down).
    let mut convs = Vec::new();
    for i in 0..12 {
        convs.push(
            amy_api
                .create_group(&format!("c{i}"), &["bob"])
                .await
                .unwrap(),
        );
    }
    let amy = live(&g, &amy_t).await;
    let bob = live(&g, &bob_t).await;
    for c in &convs {
        amy.send(c, &format!("{c}-first"), "first").await.unwrap();
    }
    let distinct = |n: usize| {
        move |s: &parley_client::Session| {
            let ids: std::collections::HashSet<uuid::Uuid> =
                s.arrivals().iter().map(|m| m.message_id).collect();
            ids.len() >= n
        }
    };
    bob.wait_for("the first messages", LONG, distinct(convs.len()))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Worker 1 dies; worker 0 takes its partitions over, slowly, while messages come.
    stack.fanouts[1].kill();
    let started = std::time::Instant::now();
    let mut sent = convs.len();
    let mut replies = Vec::new();
    // Pipelined: a send is confirmed by its routed copy, which waits for the warm-up.
    while started.elapsed() < Duration::from_secs(30) {
        for c in &convs {
            replies.push(
                amy.send_nowait(c, &format!("{c}-{sent}"), "during the warm-up")
                    .await
                    .unwrap(),
            );
            sent += 1;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for r in replies {
        r.await.unwrap().expect("sent");
    }
    // Everything arrives live, soon after the warm-up (6 s to notice the death, 20 s
    // to warm up): not after a cycle of evictions and warm-ups.
    let arrived = bob
        .wait_for("every message", Duration::from_secs(20), distinct(sent))
        .await;
    let log = stack.fanouts[0].log_text();
    assert!(
        !log.contains("maximum poll interval"),
        "the worker was evicted for not polling:\n{}",
        log.lines()
            .filter(|l| l.contains("poll interval") || l.contains("revoked"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    arrived.unwrap_or_else(|e| {
        panic!(
            "{e}: {} of {sent} arrived {:?} after the kill",
            bob.arrivals().len(),
            started.elapsed()
        )
    });
}

/// A client that gives up while its session is being set up (the workers have not
/// acknowledged its presence yet) is let go at once: its socket is not held, half
/// closed, until the setup ends. Under a connection storm those sockets used to pile up
/// in CLOSE-WAIT until the process ran out of files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gone_during_session_setup_is_let_go_at_once() {
    let stack = Processes::start("gone-in-setup", 1).await;
    let g = &stack.gateways[0];
    let connections = || async {
        let m = reqwest::get(format!("{g}/metrics")).await.unwrap();
        let text = m.text().await.unwrap();
        text.lines()
            .find(|l| l.starts_with("parley_connections "))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let mut tokens = Vec::new();
    for i in 0..10 {
        tokens.push(token(g, &format!("setup{i}")).await);
    }
    // With the worker stopped, no presence is acknowledged: every session waits in its
    // setup for the acknowledgement timeout (5 s).
    stack.fanouts[0].pause();
    let mut sockets = Vec::new();
    for t in &tokens {
        sockets.push(common::raw_socket(g, t).await);
    }
    common::eventually("ten sessions open", LONG, || async {
        connections().await >= 10.0
    })
    .await;
    let closed_at = std::time::Instant::now();
    for mut s in sockets {
        let _ = s.close(None).await;
    }
    common::eventually("every session ended", LONG, || async {
        connections().await == 0.0
    })
    .await;
    let took = closed_at.elapsed();
    stack.fanouts[0].resume();
    assert!(
        took < Duration::from_secs(3),
        "the sessions ended {took:?} after their clients left: they waited for their setup"
    );
}
