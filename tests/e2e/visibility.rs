//! Who may see what, against the real broker and real `parley` processes: the second
//! review's findings about reading what one may no longer read, watching someone's
//! presence without their consent, and learning what exists from how a refusal looks.

use crate::common;

use std::time::Duration;

use common::stack::{Options, Processes};
use common::{live, token, LONG};
use futures::{SinkExt, StreamExt};
use parley_client::Api;
use reqwest::Method;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

type Raw = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// A raw WebSocket of `token` on `base` that the test reads only when it wants to, with
/// a small fixed receive buffer (a client on a slow link).
async fn raw_socket(base: &str, token: &str) -> Raw {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = format!("{}/v1/ws", base.replacen("http://", "ws://", 1));
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let addr: std::net::SocketAddr = base.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(8 * 1024).unwrap();
    let tcp = socket.connect(addr).await.expect("tcp");
    tokio_tungstenite::client_async(req, tcp)
        .await
        .expect("ws")
        .0
}

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
/// posted there. No page she gets may hold a message posted after her removal.
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

    let mut mia = raw_socket(g, &mia_t).await;
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
