//! A hostile client floods its WebSocket with thousands of frames a second, of every
//! type and of every kind of wrong: invalid UTF-8, binary frames, deep JSON, huge cursor
//! maps, negative seqs, oversized frames. The gateway (with its default limits) stays
//! up, answers with errors, other people's messages keep arriving promptly, and memory
//! stays bounded.

#[path = "e2e/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::stack::InProcess;
use common::{live, token, LONG};
use futures::{SinkExt, StreamExt};
use parley_client::Api;
use serde_json::json;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

/// How long the flood lasts.
const FLOOD: Duration = Duration::from_secs(15);
/// Resident memory the whole test process may gain during the flood.
const RSS_GROWTH_MAX: u64 = 256 * 1024 * 1024;

fn rss() -> u64 {
    parley_ops::metrics::resident_bytes().expect("VmRSS")
}

/// Every kind of frame, good and bad, round-robin; the large ones built once.
fn frames(conv: &str, i: u64) -> Message {
    use std::sync::OnceLock;
    static LARGE: OnceLock<[Message; 3]> = OnceLock::new();
    let large = LARGE.get_or_init(|| {
        let fits: serde_json::Map<String, serde_json::Value> =
            (0..2_000).map(|c| (format!("c{c}"), json!(c))).collect();
        let too_big: serde_json::Map<String, serde_json::Value> = (0..5_000)
            .map(|c| (format!("conv-{c}"), json!(-1)))
            .collect();
        [
            Message::Text(format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into()),
            Message::Text(json!({"type": "sync", "cursors": fits}).to_string().into()),
            Message::Text(
                json!({"type": "sync", "cursors": too_big})
                    .to_string()
                    .into(),
            ),
        ]
    });
    let text = |v: serde_json::Value| Message::Text(v.to_string().into());
    // Not UTF-8, in a text frame: the protocol says the socket closes (1007), so the
    // flooder reconnects; now and then.
    if i % 2_000 == 1_999 {
        return Message::Frame(Frame::message(
            vec![0xff, 0xfe, b'{', 0xc3, 0x28],
            OpCode::Data(Data::Text),
            true,
        ));
    }
    match i % 16 {
        0 => text(
            json!({"type": "send", "client_msg_id": format!("f{i}"), "conversation_id": conv, "body": "flood"}),
        ),
        1 => text(json!({"type": "typing", "conversation_id": conv, "active": true})),
        2 => text(json!({"type": "ack", "conversation_id": conv, "seq": -5})),
        3 => text(json!({"type": "read", "conversation_id": conv, "seq": i64::MAX})),
        4 => text(
            json!({"type": "history", "conversation_id": conv, "after_seq": -100, "before_seq": -1, "limit": 0}),
        ),
        5 => text(json!({"type": "sync", "cursors": {conv: -7}})),
        6 => text(json!({"type": "presence_query", "user_ids": ["amy", "bob", ""]})),
        7 => text(json!({"type": "ping"})),
        8 => text(json!({"type": "ack", "conversation_id": conv})),
        9 => Message::Binary(vec![0u8, 159, 146, 150].into()),
        // 10,000 levels deep; a cursor map as large as a frame may be; one past the
        // 64 KiB a frame may hold (answered too_large; the socket stays).
        // (One cycle in 200: they take the socket's bandwidth, not its frame rate.)
        10..=12 if (i / 16) % 200 == 0 => large[(i % 16 - 10) as usize].clone(),
        10 => text(json!({"type": "history", "conversation_id": conv, "limit": u32::MAX})),
        11 => text(json!({"type": "presence_query", "user_ids": []})),
        12 => text(json!({"type": "sync", "cursors": {"": i64::MIN}})),
        13 => Message::Text(r#"{"type":"no_such_frame"}"#.into()),
        14 => Message::Text(r#"{"type":"send","conversation_id":7}"#.into()),
        _ => text(
            json!({"type": "send", "client_msg_id": "", "conversation_id": "x".repeat(300), "body": "y"}),
        ),
    }
}

/// One flooding connection: sends as fast as the socket takes frames until `until`,
/// reading (and counting) what comes back. Returns when the gateway closes it.
async fn flood_once(
    base: &str,
    token: &str,
    conv: &str,
    until: Instant,
    sent: &AtomicU64,
    errors: &Arc<AtomicU64>,
) {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = format!("{}/v1/ws", base.replacen("http://", "ws://", 1));
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let ws = match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => ws,
        Err(e) => {
            // Refused (a rate limit on connecting): wait a little.
            eprintln!("flood: connect refused: {e}");
            tokio::time::sleep(Duration::from_millis(200)).await;
            return;
        }
    };
    let (mut sink, mut stream) = ws.split();
    let errors = errors.clone();
    let reader = tokio::spawn(async move {
        loop {
            match stream.next().await {
                Some(Ok(Message::Text(t))) => {
                    if t.as_str().starts_with(r#"{"type":"error""#) {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Some(Ok(Message::Close(c))) => {
                    eprintln!("flood: closed by the gateway: {c:?}");
                    return;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    eprintln!("flood: socket error: {e}");
                    return;
                }
                None => return,
            }
        }
    });
    let deadline = tokio::time::Instant::from_std(until);
    while Instant::now() < until {
        let i = sent.fetch_add(1, Ordering::Relaxed);
        // The gateway may stop reading (its send queue is full): that is its right.
        match tokio::time::timeout_at(deadline, sink.send(frames(conv, i))).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => break,
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), sink.close()).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_hostile_frames_harms_no_one_else() {
    let stack = InProcess::start_limited("flood", 1, Default::default()).await;
    let g = stack.gateways[0].clone();
    let (amy_t, bob_t, mal_t) = (
        token(&g, "amy").await,
        token(&g, "bob").await,
        token(&g, "mallory").await,
    );
    let conv = Api::new(&g, &amy_t).create_direct("bob").await.unwrap();
    let own = Api::new(&g, &mal_t).create_direct("amy").await.unwrap();
    let (amy, bob) = (live(&g, &amy_t).await, live(&g, &bob_t).await);
    amy.send(&conv, "warm", "warm up").await.unwrap();
    bob.wait_messages(&conv, 1, LONG).await.unwrap();
    let rss_before = rss();

    let until = Instant::now() + FLOOD;
    let sent = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let flooder = {
        let (g, sent, errors) = (g.clone(), sent.clone(), errors.clone());
        tokio::spawn(async move {
            while Instant::now() < until {
                flood_once(&g, &mal_t, &own, until, &sent, &errors).await;
            }
        })
    };

    // Meanwhile amy talks to bob, one message every 100 ms: each must arrive promptly.
    let mut latencies = Vec::new();
    let mut i = 0;
    while Instant::now() < until {
        let started = Instant::now();
        amy.send(&conv, &format!("during-{i}"), "still here?")
            .await
            .unwrap_or_else(|e| panic!("amy's send {i} during the flood: {e}"));
        bob.wait_messages(&conv, i + 2, LONG).await.unwrap();
        latencies.push(started.elapsed());
        i += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    flooder.await.unwrap();
    let rss_after = rss();

    let sent = sent.load(Ordering::Relaxed);
    let per_s = sent as f64 / FLOOD.as_secs_f64();
    println!(
        "flood: {sent} frames ({per_s:.0}/s), {} error frames back; amy→bob {} messages; \
         RSS {} → {} MiB",
        errors.load(Ordering::Relaxed),
        latencies.len(),
        rss_before >> 20,
        rss_after >> 20
    );
    assert!(per_s > 1_000.0, "the flood was only {per_s:.0} frames/s");
    assert!(
        errors.load(Ordering::Relaxed) > 0,
        "no error frames came back"
    );
    latencies.sort();
    let median = latencies[latencies.len() / 2];
    let worst = *latencies.last().unwrap();
    println!("amy→bob during the flood: median {median:?}, worst {worst:?}");
    assert!(latencies.len() >= 20, "only {} messages", latencies.len());
    assert!(median < Duration::from_secs(1), "median {median:?}");
    assert!(worst < Duration::from_secs(10), "worst {worst:?}");
    assert!(
        rss_after.saturating_sub(rss_before) < RSS_GROWTH_MAX,
        "RSS grew {} MiB",
        (rss_after - rss_before) >> 20
    );
    // The gateway is up and serves everyone else as before.
    let health = reqwest::get(format!("{g}/healthz")).await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let last = amy.send(&conv, "after", "after the flood").await.unwrap();
    bob.wait_messages(&conv, i + 2, LONG).await.unwrap();
    assert!(bob.messages(&conv).iter().any(|m| m.seq == last.seq));
}
