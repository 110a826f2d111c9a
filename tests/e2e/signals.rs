//! Receipts and typing indicators reach the conversation's other online members live,
//! and nobody else; typing never reaches history. Separate processes, real broker.

use crate::common;

use std::time::Duration;

use common::stack::Processes;
use parley_client::session::Receipt;
use parley_client::{Api, Session};
use parley_schemas::ReceiptKind;

const LONG: Duration = Duration::from_secs(60);

async fn live(base: &str, user: &str) -> (Api, Session) {
    let token = Api::dev_token(base, user).await.expect("token");
    let s = Session::connect(base, &token).await.expect("connect");
    assert!(s.ready(LONG).await.expect("ready"), "{user} not live");
    (Api::new(base, &token), s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_and_typing_reach_online_members_only() {
    let stack = Processes::start("signals", 2).await;
    let (g0, g1) = (&stack.gateways[0], &stack.gateways[1]);
    let (amy_api, amy) = live(g0, "amy").await;
    let (_, bob) = live(g1, "bob").await;
    let (_, eve) = live(g1, "eve").await;
    let conv = amy_api.create_direct("bob").await.unwrap();
    let sent = amy.send(&conv, "m1", "hello").await.unwrap();
    bob.wait_messages(&conv, 1, LONG).await.unwrap();

    // Bob's receipts: recorded (his own session hears `receipt`), and routed to Amy.
    bob.ack(&conv, sent.seq, LONG).await.expect("ack");
    bob.send_json(serde_json::json!({"type": "read", "conversation_id": conv, "seq": sent.seq}))
        .await
        .unwrap();
    let want = |kind| Receipt {
        conversation_id: conv.clone(),
        user_id: "bob".into(),
        kind,
        seq: sent.seq,
    };
    let (delivered, read) = (want(ReceiptKind::Delivered), want(ReceiptKind::Read));
    amy.wait_for("bob's receipts at amy", LONG, |s| {
        let r = s.receipts();
        r.contains(&delivered) && r.contains(&read)
    })
    .await
    .expect("amy sees bob's receipts");

    // Bob types: Amy sees it start and stop; Bob gets no echo.
    bob.typing(&conv, true).await.unwrap();
    bob.typing(&conv, false).await.unwrap();
    let start = (conv.clone(), "bob".to_string(), true);
    let stop = (conv.clone(), "bob".to_string(), false);
    amy.wait_for("bob typing at amy", LONG, |s| {
        let t = s.typing_seen();
        t.contains(&start) && t.contains(&stop)
    })
    .await
    .expect("amy sees bob typing");

    // Eve, online but no member, got none of it; typing is not history.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(eve.receipts().is_empty() && eve.typing_seen().is_empty());
    assert!(bob.typing_seen().is_empty(), "no typing echo to the typist");
    assert_eq!(amy_api.all_messages(&conv).await.unwrap().len(), 1);

    // An outsider's typing is refused and goes nowhere.
    eve.typing(&conv, true).await.unwrap();
    eve.wait_for("eve's error", LONG, |s| {
        s.errors().iter().any(|e| e["code"] == "not_member")
    })
    .await
    .expect("not_member error");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!amy.typing_seen().iter().any(|(_, user, _)| user == "eve"));
}
