//! `parley dev` with no broker: the embedded log, under `./parley-data`. Every message
//! the log acknowledged survives a SIGKILL in the middle of a burst of sends, and the
//! next run resumes with the whole history. (Every other end-to-end test runs on the
//! real Kafka broker; this one is about the embedded log's promise.)

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::stack::{dev_embedded, free_port, wait_ready, Proc};
use common::{live, token, LONG};
use parley_client::Api;

/// `parley dev` on its embedded log in `dir`, sends and reads unlimited.
fn dev(dir: &Path, port: u16, run: &str) -> Proc {
    let unlimited = [
        ("PARLEY_RATE_SENDS".to_string(), "0".to_string()),
        ("PARLEY_RATE_READS".into(), "0".into()),
    ];
    dev_embedded(dir, port, run, &unlimited)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parley_dev_without_a_broker_keeps_every_acked_message_through_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().port();
    let base = format!("http://127.0.0.1:{port}");
    let mut first = dev(dir.path(), port, "first");
    wait_ready(&base).await;
    assert!(
        dir.path().join("parley-data/log").is_dir(),
        "the log's directory"
    );
    let banner = std::fs::read_to_string(dir.path().join("first.log")).unwrap();
    assert!(banner.contains("log:        embedded"), "{banner}");
    assert!(banner.contains("/v1/dev/token"), "{banner}");

    let amy_t = token(&base, "amy").await;
    let conv = Api::new(&base, &amy_t).create_direct("bob").await.unwrap();
    let amy = live(&base, &amy_t).await;
    let before = amy.send(&conv, "first", "before the burst").await.unwrap();

    // A burst of pipelined sends; the process dies once 200 of them are acked.
    const BURST: usize = 5_000;
    let acked: Arc<Mutex<BTreeMap<String, i64>>> = Arc::default();
    acked.lock().unwrap().insert("first".into(), before.seq);
    let amy = Arc::new(amy);
    let sender = {
        let (amy, conv, acked) = (amy.clone(), conv.clone(), acked.clone());
        tokio::spawn(async move {
            let mut waiting = Vec::new();
            for i in 0..BURST {
                let cmid = format!("m{i:04}");
                let Ok(rx) = amy.send_nowait(&conv, &cmid, &format!("message {i}")).await else {
                    break;
                };
                let acked = acked.clone();
                waiting.push(tokio::spawn(async move {
                    if let Ok(Ok(sent)) = rx.await {
                        acked.lock().unwrap().insert(cmid, sent.seq);
                    }
                }));
            }
            for w in waiting {
                let _ = tokio::time::timeout(Duration::from_secs(40), w).await;
            }
        })
    };
    let deadline = tokio::time::Instant::now() + LONG;
    while acked.lock().unwrap().len() <= 200 {
        assert!(tokio::time::Instant::now() < deadline, "200 acks");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    first.child.kill().expect("SIGKILL");
    first.child.wait().unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(60), sender).await;
    let acked = acked.lock().unwrap().clone();
    drop(amy);

    // The next run: everything acked is there, in order, each at the seq it was acked with.
    let port = free_port().port();
    let base = format!("http://127.0.0.1:{port}");
    let mut second = dev(dir.path(), port, "second");
    wait_ready(&base).await;
    let amy_t = token(&base, "amy").await;
    let history = Api::new(&base, &amy_t).all_messages(&conv).await.unwrap();
    let kept: BTreeMap<i64, &str> = history.iter().map(|m| (m.seq, m.body.as_str())).collect();
    assert_eq!(kept.len(), history.len(), "no seq twice");
    assert!(
        history.windows(2).all(|w| w[0].seq < w[1].seq),
        "history in order"
    );
    for (cmid, seq) in &acked {
        let body = kept
            .get(seq)
            .unwrap_or_else(|| panic!("{cmid}, acked at seq {seq}, is lost"));
        let want = if cmid == "first" {
            "before the burst".to_string()
        } else {
            format!("message {}", cmid[1..].parse::<usize>().unwrap())
        };
        assert_eq!(*body, want, "seq {seq}");
    }
    eprintln!(
        "{} of {BURST} acked before SIGKILL, {} in the log after it",
        acked.len(),
        history.len()
    );
    assert!(
        acked.len() <= BURST,
        "the kill came in the middle of the burst"
    );
    // And the resumed run takes new messages after them.
    let amy = live(&base, &amy_t).await;
    let after = amy.send(&conv, "after", "after the restart").await.unwrap();
    assert!(after.seq > *acked.values().max().unwrap());
    second.child.kill().unwrap();
    second.child.wait().unwrap();
}
