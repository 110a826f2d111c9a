//! Offline users, sync, retries, the long-poll fallback and the read-your-log barrier,
//! with every role a separate process against the real broker.

use crate::common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::stack::{appended, Options, Processes};
use common::{eventually, live, token, LONG};
use parley_client::{Api, Poller};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_user_gets_all_500_messages_once_in_order_and_acks_its_inbox_empty() {
    let stack = Processes::start("offline", 1).await;
    let g = &stack.gateways[0];
    let (amy, bob) = (token(g, "amy").await, token(g, "bob").await);
    let conv = Api::new(g, &amy).create_direct("bob").await.unwrap();
    let bob_api = Api::new(g, &bob);

    // Bob is offline while Amy sends 500.
    let a = live(g, &amy).await;
    let mut replies = Vec::new();
    for i in 0..500 {
        replies.push(
            a.send_nowait(&conv, &format!("m{i}"), &format!("amy {i}"))
                .await
                .unwrap(),
        );
    }
    let mut sent = Vec::new();
    for r in replies {
        sent.push(r.await.unwrap().expect("sent"));
    }
    // Each waits in Bob's inbox.
    eventually("500 inbox entries", LONG, || async {
        bob_api.inbox().await.unwrap().len() == 500
    })
    .await;

    let b = live(g, &bob).await;
    b.sync(LONG).await.expect("sync");
    let got = b.messages(&conv);
    let ids: Vec<Uuid> = got.iter().map(|m| m.message_id).collect();
    let want: Vec<Uuid> = sent.iter().map(|s| s.message_id).collect();
    assert_eq!(ids, want, "bob holds amy's 500, in her order");
    let seqs: Vec<i64> = got.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, sent.iter().map(|s| s.seq).collect::<Vec<_>>());
    assert_eq!(b.duplicates(&conv), 0, "each arrived once");
    assert!(
        b.arrivals().is_empty(),
        "nothing came live: it was all sent before"
    );

    // Syncing again from the cursors brings nothing new.
    b.sync(LONG).await.expect("second sync");
    assert_eq!(b.messages(&conv).len(), 500);
    assert_eq!(b.duplicates(&conv), 0);

    // The delivery receipt clears the inbox and shows in the receipts view.
    let last = *seqs.last().unwrap();
    b.ack(&conv, last, LONG).await.expect("ack recorded");
    eventually("bob's inbox empty", LONG, || async {
        bob_api.inbox().await.unwrap().is_empty()
    })
    .await;
    // The projector reports how far it has consumed each of its streams.
    let status: serde_json::Value =
        common::stack::projector_get(format!("{}/v1/status", stack.projector_url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let sum = |k: &str| -> i64 {
        status[k]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_i64().unwrap())
            .sum()
    };
    assert!(sum("inbox") >= 500 && sum("receipts") >= 1, "{status}");
    let receipts = bob_api
        .ok(
            reqwest::Method::GET,
            &format!("/v1/conversations/{conv}/receipts"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(receipts["receipts"][0]["user_id"], "bob");
    assert_eq!(receipts["receipts"][0]["delivered"], last);

    // Receipts beyond the conversation's end, negative, or from outsiders change nothing.
    let r = bob_api
        .call(
            reqwest::Method::POST,
            &format!("/v1/conversations/{conv}/receipts"),
            Some(serde_json::json!({"kind": "read", "seq": last + 1_000_000})),
        )
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!((r.status.as_u16(), r.code()), (400, "bad_request"));
    let carl = Api::new(g, &token(g, "carl").await);
    let r = carl
        .call(
            reqwest::Method::POST,
            &format!("/v1/conversations/{conv}/receipts"),
            Some(serde_json::json!({"kind": "delivered", "seq": 0})),
        )
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!((r.status.as_u16(), r.code()), (403, "not_member"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_retried_across_a_reconnect_is_one_message_with_one_seq() {
    let stack = Processes::start("retries", 2).await;
    let (g0, g1) = (&stack.gateways[0], &stack.gateways[1]);
    let amy = token(g0, "amy").await;
    let conv = Api::new(g0, &amy).create_direct("bob").await.unwrap();

    let first = live(g0, &amy).await;
    let s1 = first.send(&conv, "retry-1", "once").await.unwrap();
    // The second send's reply is lost with the connection.
    let _lost = first.send_nowait(&conv, "retry-2", "twice?").await.unwrap();
    first.close().await;

    let second = live(g1, &amy).await;
    let (a, b) = tokio::join!(
        second.send(&conv, "retry-1", "once"),
        second.send(&conv, "retry-1", "once")
    );
    assert_eq!(a.unwrap().seq, s1.seq);
    assert_eq!(b.unwrap().seq, s1.seq);
    let (c, d) = tokio::join!(
        second.send(&conv, "retry-2", "twice?"),
        second.send(&conv, "retry-2", "twice?")
    );
    let (c, d) = (c.unwrap(), d.unwrap());
    assert_eq!(c.seq, d.seq);
    assert_eq!(c.message_id, d.message_id);

    let history = Api::new(g1, &amy).all_messages(&conv).await.unwrap();
    let ids: Vec<Uuid> = history.iter().map(|m| m.message_id).collect();
    assert_eq!(
        ids,
        vec![s1.message_id, c.message_id],
        "one entry per client_msg_id"
    );
    assert_eq!(history[0].seq, s1.seq);
    assert_eq!(history[1].seq, c.seq);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_client_and_a_websocket_client_chat() {
    let stack = Processes::start("longpoll", 2).await;
    let gws = stack.gateways.clone();
    let (lee, wes) = (token(&gws[0], "lee").await, token(&gws[0], "wes").await);
    let conv = Api::new(&gws[0], &wes).create_direct("lee").await.unwrap();
    let w = live(&gws[1], &wes).await;
    const N: usize = 100;

    // Lee polls the two gateways in turn while sending over REST.
    let poll_conv = conv.clone();
    let lee_token = lee.clone();
    let lee_task = tokio::spawn(async move {
        let mut p = Poller::new(&gws, &lee_token, "lee");
        let mut sent = Vec::new();
        let deadline = tokio::time::Instant::now() + LONG;
        while p.store.messages(&poll_conv).len() < 2 * N {
            assert!(
                tokio::time::Instant::now() < deadline,
                "lee never got everything"
            );
            if sent.len() < N {
                let i = sent.len();
                sent.push(
                    p.send(&poll_conv, &format!("lee-{i}"), "from lee")
                        .await
                        .unwrap(),
                );
            }
            let timeout = if sent.len() < N { 0 } else { 2_000 };
            p.poll(Duration::from_millis(timeout)).await.expect("poll");
        }
        (p, sent)
    });
    let mut w_sent = Vec::new();
    for i in 0..N {
        w_sent.push(
            w.send(&conv, &format!("wes-{i}"), "from wes")
                .await
                .unwrap(),
        );
    }
    w.wait_messages(&conv, 2 * N, LONG)
        .await
        .expect("wes gets lee's");
    let (p, l_sent) = lee_task.await.unwrap();

    let history = Api::new(&stack.gateways[0], &wes)
        .all_messages(&conv)
        .await
        .unwrap();
    assert_eq!(history.len(), 2 * N);
    let want: Vec<(i64, Uuid)> = history.iter().map(|m| (m.seq, m.message_id)).collect();
    let held = |ms: Vec<parley_schemas::frames::MessageView>| -> Vec<(i64, Uuid)> {
        ms.iter().map(|m| (m.seq, m.message_id)).collect()
    };
    assert_eq!(
        held(p.store.messages(&conv)),
        want,
        "the long-poll client holds it all, in order"
    );
    assert_eq!(
        held(w.messages(&conv)),
        want,
        "the WebSocket client holds it all, in order"
    );
    // (Overlap is allowed: a gap fetch may bring back what the `sent` reply also held.)
    let acked: BTreeSet<i64> = l_sent.iter().chain(&w_sent).map(|s| s.seq).collect();
    assert_eq!(acked, want.iter().map(|(s, _)| *s).collect());

    // A newcomer's first polls page through everything from the beginning, any gateway
    // continuing where the other left off.
    let mut fresh = Poller::new(&stack.gateways, &lee, "lee");
    fresh.limit = Some(7);
    let mut polls = 0;
    loop {
        polls += 1;
        assert!(polls < 100, "paging never ended");
        if !fresh.poll(Duration::ZERO).await.expect("poll").has_more {
            break;
        }
    }
    assert!(polls >= 2 * N / 7, "pages of 7: {polls} polls");
    assert_eq!(
        held(fresh.store.messages(&conv)),
        want,
        "paged polls hold it all"
    );
    assert_eq!(fresh.store.conversations[&conv].duplicates, 0);

    // A bad cursor is a 400 with a JSON error, not a reset.
    let api = Api::new(&stack.gateways[1], &wes);
    let r = api
        .call(
            reqwest::Method::GET,
            "/v1/events?cursor=nonsense&timeout_ms=0",
            None,
        )
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!((r.status.as_u16(), r.code()), (400, "bad_request"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_appended_just_before_a_reconnect_is_never_missed_with_a_slow_projector() {
    let options = Options {
        projector_args: vec!["--debug-apply-delay-ms".into(), "1000".into()],
        ..Options::gateways(2)
    };
    let stack = Processes::start_with("barrier", options).await;
    let (g0, g1) = (&stack.gateways[0], &stack.gateways[1]);
    let (amy, bob) = (token(g0, "amy").await, token(g0, "bob").await);
    let conv = Api::new(g0, &amy).create_direct("bob").await.unwrap();
    let a = live(g0, &amy).await;

    let log = common::stack::kafka().await;
    let projector = reqwest::Client::new();
    let mut lagging = 0;
    for round in 0..5 {
        // Bob is connected, then drops; Amy's message lands just before he is back.
        let b = live(g1, &bob).await;
        b.sync(LONG).await.expect("sync");
        let held = b.into_store();
        let before = appended(&*log, &stack.topics.events).await;
        let cmid = format!("r{round}");
        let reply = a.send_nowait(&conv, &cmid, "just before").await.unwrap();
        eventually("the append", LONG, || async {
            appended(&*log, &stack.topics.events).await > before
        })
        .await;
        let b = live(g0, &bob).await;
        // The projector has not applied the message yet (it sleeps 1 s per batch).
        let status: serde_json::Value = projector
            .get(format!("{}/v1/status", stack.projector_url))
            .bearer_auth(common::stack::SERVICE_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let applied: i64 = status["applied"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_i64().unwrap())
            .sum();
        lagging += usize::from(applied <= before);
        b.absorb(held);
        b.sync(LONG).await.expect("sync after the reconnect");
        // At `synced`, the message is there: the sync waited for the slow projector.
        let id = parley_schemas::ids::message_id("amy", &cmid);
        let ids: Vec<Uuid> = b.messages(&conv).iter().map(|m| m.message_id).collect();
        assert!(
            ids.contains(&id),
            "round {round}: missing right after synced"
        );
        assert_eq!(ids.len(), round + 1);
        assert_eq!(reply.await.unwrap().unwrap().message_id, id);
        b.close().await;
    }
    assert!(
        lagging >= 3,
        "the projector should have lagged in most rounds ({lagging} of 5)"
    );
}
