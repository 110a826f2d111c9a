//! Sealed bodies (crypto-shredding's first half): with a key-encryption key, what a
//! message says reaches the log only as ciphertext, its data key goes to the `keys`
//! topic, and every reader (live delivery on another gateway, history, search) still
//! shows the text.

use crate::common;

use std::time::Duration;

use common::stack::{dev_embedded, free_port, wait_ready, Options, Processes};
use common::{eventually, live, token, LONG};
use futures::StreamExt;
use parley_client::{Api, SearchOptions};
use parley_schemas::{decode_any, AnyRecord};
use parley_sequencer::{EventLog, StartAt};

const KEK: &str = "an-end-to-end-test-key-encryption-key";

/// Every record of `topic`'s partitions, read to their ends now.
async fn records(log: &dyn EventLog, topic: &str) -> Vec<(Option<Vec<u8>>, Option<Vec<u8>>)> {
    let ends = log.end_offsets(topic).await.unwrap();
    let mut out = Vec::new();
    for (p, end) in ends.iter().enumerate() {
        if *end == 0 {
            continue;
        }
        let mut stream = log
            .read(topic, &[(p as i32, StartAt::Beginning)])
            .await
            .unwrap();
        while let Some(r) = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("the partition to its end")
        {
            let r = r.unwrap();
            out.push((r.key.map(|k| k.to_vec()), r.value.map(|v| v.to_vec())));
            if r.offset + 1 >= *end {
                break;
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sealed_bodies_reach_the_log_as_ciphertext_and_every_reader_as_text() {
    let options = Options {
        env: vec![("PARLEY_KEK".into(), KEK.into())],
        ..Options::gateways(2)
    };
    let stack = Processes::start_with("sealed", options).await;
    let (g0, g1) = (&stack.gateways[0], &stack.gateways[1]);
    let (amy_t, bob_t) = (token(g0, "amy").await, token(g1, "bob").await);
    let conv = Api::new(g0, &amy_t).create_direct("bob").await.unwrap();
    let amy = live(g0, &amy_t).await;
    let bob = live(g1, &bob_t).await;
    let words = ["quetzalcoatl", "ocelotl", "xochitl"];
    let mut seqs = Vec::new();
    for (i, w) in words.iter().enumerate() {
        let sent = amy
            .send(&conv, &format!("m{i}"), &format!("the word is {w}, @bob"))
            .await
            .expect("sent");
        seqs.push(sent.seq);
    }
    // Live, on the other gateway: opened with amy's gateway's transit key.
    bob.wait_for("bob has all three", LONG, |s| s.messages(&conv).len() == 3)
        .await
        .unwrap();
    let got: Vec<String> = bob.messages(&conv).into_iter().map(|m| m.body).collect();
    assert_eq!(
        got,
        words
            .iter()
            .map(|w| format!("the word is {w}, @bob"))
            .collect::<Vec<_>>()
    );
    // History, opened with each message's data key.
    let bob_api = Api::new(g1, &bob_t);
    let page = bob_api.history(&conv, None, None, 10).await.unwrap();
    let kept: Vec<(i64, String)> = page.messages.into_iter().map(|m| (m.seq, m.body)).collect();
    assert_eq!(kept.len(), 3);
    assert_eq!(kept[0], (seqs[0], "the word is quetzalcoatl, @bob".into()));
    // Search indexes the text.
    eventually("search finds a sealed word", LONG, || async {
        bob_api
            .search("ocelotl", &SearchOptions::default())
            .await
            .is_ok_and(|r| r.results.iter().map(|h| h.seq).eq([seqs[1]]))
    })
    .await;

    // The log: no word in any record of `events`; each message names its data key,
    // which `keys` holds for amy; the mention is readable without the key.
    let log = common::stack::kafka().await;
    let events = records(&*log, &stack.topics.events).await;
    let mut sealed = Vec::new();
    for (_, value) in &events {
        let value = value.as_deref().unwrap();
        for w in words {
            assert!(!contains(value, w), "`{w}` in plain text in the log");
        }
        if let Ok(AnyRecord::MessagePosted(m)) = decode_any(value) {
            let s = m.sealed.expect("every message sealed");
            assert!(m.body.is_empty());
            assert_eq!(s.mentions, vec!["bob".to_string()]);
            assert!(s
                .transit_key
                .as_deref()
                .is_some_and(|t| t.starts_with("t/0/")));
            sealed.push(s.key_id);
        }
    }
    assert_eq!(sealed.len(), 3);
    let keys = records(&*log, &stack.topics.keys).await;
    for id in &sealed {
        let key = keys
            .iter()
            .find(|(k, _)| k.as_deref() == Some(id.as_bytes()))
            .unwrap_or_else(|| panic!("no key {id} in `keys`"));
        let Ok(AnyRecord::DataKey(k)) = decode_any(key.1.as_deref().unwrap()) else {
            panic!("not a data key")
        };
        assert_eq!(
            (k.owner.as_str(), k.conversation_id.as_str()),
            ("amy", conv.as_str())
        );
    }
    // Nothing a receiver does writes the text anywhere else either (inbox, push).
    for topic in [
        &stack.topics.inbox,
        &stack.topics.push,
        &stack.topics.deliveries,
    ] {
        for (_, value) in records(&*log, topic).await {
            for w in words {
                assert!(
                    !value.as_deref().is_some_and(|v| contains(v, w)),
                    "`{w}` in plain text in {topic}"
                );
            }
        }
    }
}

/// The same on `parley dev`'s embedded log: its files on disk hold no word of what was
/// said, and a restart reads everything back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_log_keeps_only_ciphertext_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().port();
    let base = format!("http://127.0.0.1:{port}");
    let env = [("PARLEY_KEK".to_string(), KEK.to_string())];
    let mut first = dev_embedded(dir.path(), port, "first", &env);
    wait_ready(&base).await;
    let amy_t = token(&base, "amy").await;
    let conv = Api::new(&base, &amy_t).create_direct("bob").await.unwrap();
    let amy = live(&base, &amy_t).await;
    for i in 0..5 {
        amy.send(
            &conv,
            &format!("m{i}"),
            &format!("tlahuizcalpantecuhtli {i}"),
        )
        .await
        .expect("sent");
    }
    drop(amy);
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let mut files = vec![dir.path().join("parley-data/log")];
    let mut found = 0;
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else {
            let bytes = std::fs::read(&p).unwrap();
            found += usize::from(contains(&bytes, "tlahuizcalpantecuhtli"));
        }
    }
    assert_eq!(found, 0, "the word is in a file of the embedded log");

    let _second = dev_embedded(dir.path(), port, "second", &env);
    wait_ready(&base).await;
    let page = Api::new(&base, &token(&base, "bob").await)
        .history(&conv, None, None, 10)
        .await
        .unwrap();
    let bodies: Vec<String> = page.messages.into_iter().map(|m| m.body).collect();
    assert_eq!(
        bodies,
        (0..5)
            .map(|i| format!("tlahuizcalpantecuhtli {i}"))
            .collect::<Vec<_>>()
    );
}
