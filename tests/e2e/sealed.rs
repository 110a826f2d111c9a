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
    let words = ["quetzalcoatl", "ocelotl", "xochitl", "axolotl"];
    let mut seqs = Vec::new();
    for (i, w) in words[..3].iter().enumerate() {
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
        words[..3]
            .iter()
            .map(|w| format!("the word is {w}, @bob"))
            .collect::<Vec<_>>()
    );
    // An edit is sealed too, under a key of its own, and reaches bob opened.
    Api::new(g0, &amy_t)
        .ok(
            reqwest::Method::PATCH,
            &format!("/v1/conversations/{conv}/messages/{}", seqs[2]),
            Some(serde_json::json!({"body": "the word is now axolotl"})),
        )
        .await
        .expect("edited");
    bob.wait_for("bob has the edit", LONG, |s| {
        s.messages(&conv)
            .iter()
            .any(|m| m.seq == seqs[2] && m.body == "the word is now axolotl")
    })
    .await
    .unwrap();
    // History, opened with each message's data key.
    let bob_api = Api::new(g1, &bob_t);
    let page = bob_api.history(&conv, None, None, 10).await.unwrap();
    let kept: Vec<(i64, String)> = page.messages.into_iter().map(|m| (m.seq, m.body)).collect();
    assert_eq!(kept.len(), 3);
    assert_eq!(kept[0], (seqs[0], "the word is quetzalcoatl, @bob".into()));
    assert_eq!(kept[2], (seqs[2], "the word is now axolotl".into()));
    // A client catching up from a cursor before the edit gets its text with the change.
    let late = live(g1, &bob_t).await;
    let mut store = parley_client::Store::default();
    for mut m in bob.messages(&conv) {
        if m.seq == seqs[2] {
            // As it was before the edit.
            m.body = "the word is xochitl, @bob".into();
            m.edited = false;
            m.edited_at = None;
            m.changed_seq = None;
        }
        store.insert(m, parley_client::store::Source::History);
    }
    late.absorb(store);
    late.sync(LONG).await.unwrap();
    let synced = late.messages(&conv);
    assert_eq!(
        synced
            .iter()
            .find(|m| m.seq == seqs[2])
            .map(|m| m.body.as_str()),
        Some("the word is now axolotl")
    );
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

/// Topic configs of `keys` that make the broker compact it within seconds: segments
/// roll at once, and a tombstone is dropped right after the next cleaning.
async fn compact_keys_quickly(topic: &str) {
    use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::ClientConfig;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", common::bootstrap())
        .create()
        .expect("admin client");
    let alter = AlterConfig::new(ResourceSpecifier::Topic(topic))
        .set("cleanup.policy", "compact")
        .set("segment.ms", "100")
        .set("min.cleanable.dirty.ratio", "0.01")
        .set("min.compaction.lag.ms", "0")
        .set("max.compaction.lag.ms", "100")
        .set("delete.retention.ms", "100");
    for r in admin
        .alter_configs(&[alter], &AdminOptions::new())
        .await
        .expect("alter configs")
    {
        r.expect("topic config changed");
    }
}

/// Every file under `dir` whose path names `prefix`, with whether it holds `needle`.
fn files_holding(dir: &std::path::Path, prefix: &str, needle: &[u8]) -> (usize, Vec<String>) {
    let (mut seen, mut holding) = (0, Vec::new());
    let mut todo = vec![dir.to_path_buf()];
    while let Some(p) = todo.pop() {
        if p.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&p) {
                todo.extend(entries.flatten().map(|e| e.path()));
            }
        } else if p.to_string_lossy().contains(prefix) {
            seen += 1;
            if std::fs::read(&p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle)) {
                holding.push(p.display().to_string());
            }
        }
    }
    (seen, holding)
}

/// "Forget me": alice is erased. Her messages read as deleted at once (bob's stay);
/// compaction then removes her data keys from the broker's disk; `parley replay
/// --decrypt` and a projector rebuilt from offset 0 show none of her text.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_erased_user_is_gone_from_views_replays_rebuilds_and_the_brokers_disk() {
    let options = Options {
        env: vec![("PARLEY_KEK".into(), KEK.into())],
        ..Options::gateways(1)
    };
    let mut stack = Processes::start_with("erasure", options).await;
    let g = stack.gateways[0].clone();
    let (alice_t, bob_t) = (token(&g, "alice").await, token(&g, "bob").await);
    let conv = Api::new(&g, &alice_t).create_direct("bob").await.unwrap();
    let (alice, bob) = (live(&g, &alice_t).await, live(&g, &bob_t).await);
    let (mut bob_first, mut alice_first) = (None, None);
    for i in 0..3 {
        let sent = alice
            .send(&conv, &format!("a{i}"), &format!("alice says ajolote{i}"))
            .await
            .unwrap();
        alice_first.get_or_insert(sent.seq);
        let sent = bob
            .send(&conv, &format!("b{i}"), &format!("bob says tlacuache{i}"))
            .await
            .unwrap();
        bob_first.get_or_insert(sent.seq);
    }
    let log = common::stack::kafka().await;
    // Alice's data keys as the broker holds them now, and that of bob's first message,
    // which he deletes for everyone.
    let mut alice_keys = Vec::new();
    for (_, value) in records(&*log, &stack.topics.keys).await {
        if let Some(Ok(AnyRecord::DataKey(k))) = value.as_deref().map(decode_any) {
            if k.owner == "alice" {
                alice_keys.push(k.wrapped);
            }
        }
    }
    assert_eq!(alice_keys.len(), 3);
    let bob_keys: Vec<Vec<u8>> = records(&*log, &stack.topics.keys)
        .await
        .into_iter()
        .filter_map(|(_, v)| match v.as_deref().map(decode_any) {
            Some(Ok(AnyRecord::DataKey(k))) if k.owner == "bob" => Some(k.wrapped),
            _ => None,
        })
        .collect();
    assert_eq!(bob_keys.len(), 3);
    let bob_first = bob_first.unwrap();
    Api::new(&g, &bob_t)
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/conversations/{conv}/messages/{bob_first}"),
            None,
        )
        .await
        .unwrap()
        .expect("deleted for everyone");
    // Its key goes the way of alice's (the first of bob's in the topic's order).
    alice_keys.push(bob_keys[0].clone());
    let data = std::path::PathBuf::from(
        std::env::var("PARLEY_TEST_KAFKA_DATA").expect("PARLEY_TEST_KAFKA_DATA (scripts/test.sh)"),
    );
    let keys_dir = stack.topics.keys.clone();
    // Before: the broker's files hold them (so the check after can fail).
    for w in &alice_keys {
        let (seen, holding) = files_holding(&data, &keys_dir, w);
        assert!(
            seen > 0 && !holding.is_empty(),
            "alice's key is not on disk yet"
        );
    }
    compact_keys_quickly(&stack.topics.keys).await;
    // Bob reacts to alice's first message: the reaction goes with it.
    let alice_first = alice_first.unwrap();
    Api::new(&g, &bob_t)
        .ok(
            reqwest::Method::PUT,
            &format!("/v1/conversations/{conv}/messages/{alice_first}/reactions/👍"),
            None,
        )
        .await
        .expect("reacted");

    // Only alice (or an operator) may ask.
    let path = "/v1/users/alice/content";
    let refused = Api::new(&g, &bob_t)
        .call(reqwest::Method::DELETE, path, None)
        .await
        .unwrap()
        .expect_err("bob cannot erase alice");
    assert_eq!(refused.status.as_u16(), 403);
    let done = Api::new(&g, &alice_t)
        .ok(reqwest::Method::DELETE, path, None)
        .await
        .expect("erased");
    assert_eq!(done["erased"], true, "{done}");

    // The views: alice's messages are deleted, bob's are whole, the seqs are all there.
    let shown = |page: Vec<parley_schemas::frames::MessageView>| -> Vec<(String, bool, String)> {
        page.into_iter()
            .map(|m| (m.sender_id, m.deleted, m.body))
            .collect()
    };
    let expected: Vec<(String, bool, String)> = (0..3)
        .flat_map(|i| {
            [
                ("alice".to_string(), true, String::new()),
                match i {
                    0 => ("bob".to_string(), true, String::new()),
                    _ => ("bob".to_string(), false, format!("bob says tlacuache{i}")),
                },
            ]
        })
        .collect();
    let bob_api = Api::new(&g, &bob_t);
    let all = bob_api.all_messages(&conv).await.unwrap();
    assert!(all.iter().all(|m| m.reactions.is_empty()), "{all:?}");
    assert_eq!(shown(all), expected);
    let found = bob_api
        .search("ajolote1", &SearchOptions::default())
        .await
        .unwrap();
    assert!(found.results.is_empty(), "{:?}", found.results);

    // The broker: the key records are compacted away (bob keeps sending, so segments
    // roll), and no segment file holds alice's wrapped keys any more.
    let mut n = 0;
    eventually("the erased keys gone from the topic and the broker's disk", Duration::from_secs(120), || {
        n += 1;
        let (bob, conv, log, keys, alice_keys, data, keys_dir) =
            (&bob, &conv, &log, &stack.topics.keys, &alice_keys, &data, &keys_dir);
        async move {
            let _ = bob.send(conv, &format!("roll{n}"), "rolling segments").await;
            let in_topic = records(&**log, keys).await.into_iter().any(|(_, v)| {
                matches!(v.as_deref().map(decode_any), Some(Ok(AnyRecord::DataKey(k))) if alice_keys.contains(&k.wrapped))
            });
            let on_disk = alice_keys
                .iter()
                .any(|w| !files_holding(data, keys_dir, w).1.is_empty());
            !in_topic && !on_disk
        }
    })
    .await;
    // No file of this deployment's topics holds alice's words in plain text.
    let (seen, holding) = files_holding(&data, &stack.prefix, b"ajolote");
    assert!(
        seen > 0,
        "the broker's segment files under {}",
        data.display()
    );
    assert!(holding.is_empty(), "{holding:?}");

    // A replay with the key-encryption key: alice's bodies are erased, bob's are text.
    let out = common::parley()
        .args([
            "replay",
            "--topic",
            "events",
            "--decrypt",
            "--log",
            &common::log_url(),
        ])
        .args(["--topic-prefix", &stack.prefix])
        .env("PARLEY_KEK", KEK)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut bodies = Vec::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let j: serde_json::Value = serde_json::from_str(line).unwrap();
        if j["schema"] == "parley.MessagePosted" && j["record"]["conversation_id"] == conv.as_str()
        {
            bodies.push((
                j["record"]["actor"].as_str().unwrap().to_string(),
                j["record"]["erased"].as_bool().unwrap(),
                j["record"]["body"].as_str().map(str::to_string),
            ));
        }
    }
    assert!(bodies.len() >= 6, "{bodies:?}");
    for (i, (who, erased, body)) in bodies[..6].iter().enumerate() {
        match (who.as_str(), i) {
            // Alice's, and bob's first (deleted for everyone).
            ("alice", _) | ("bob", 1) => assert_eq!((*erased, body.as_deref()), (true, None)),
            _ => assert!(!erased && body.as_deref().is_some_and(|b| b.starts_with("bob says"))),
        }
    }

    // A projector rebuilt from offset 0 shows the same.
    stack.rebuild_projector(0, &[]).await;
    eventually("the rebuilt views", LONG, || async {
        bob_api
            .all_messages(&conv)
            .await
            .is_ok_and(|all| shown(all.into_iter().take(6).collect()) == expected)
    })
    .await;
}

/// Alice's data keys in the embedded log in `dir` (the process using it stopped).
async fn embedded_keys_of(dir: &std::path::Path, owner: &str) -> Vec<Vec<u8>> {
    let config = || parley_sequencer::EmbeddedConfig::new(dir.join("parley-data/log"));
    // An instance opened here a moment ago may still be letting go of its lock.
    let mut tries = 0;
    let log = loop {
        match parley_sequencer::EmbeddedLog::open(config()).await {
            Ok(log) => break log,
            Err(e) if tries < 50 => {
                tries += 1;
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the embedded log, once parley dev stopped: {e}"),
        }
    };
    records(&log, "parley.keys")
        .await
        .into_iter()
        .filter_map(|(_, v)| match v.as_deref().map(decode_any) {
            Some(Ok(AnyRecord::DataKey(k))) if k.owner == owner => Some(k.wrapped),
            _ => None,
        })
        .collect()
}

/// The same erasure on `parley dev`'s embedded log: its compaction really drops the
/// erased keys, from the topic and from the files on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_user_is_gone_from_the_embedded_logs_files() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().port();
    let base = format!("http://127.0.0.1:{port}");
    let env = [
        ("PARLEY_KEK".to_string(), KEK.to_string()),
        (
            "PARLEY_EMBEDDED_MAINTENANCE_MS".to_string(),
            "300".to_string(),
        ),
    ];
    let mut first = dev_embedded(dir.path(), port, "first", &env);
    wait_ready(&base).await;
    let (alice_t, bob_t) = (token(&base, "alice").await, token(&base, "bob").await);
    let conv = Api::new(&base, &alice_t)
        .create_direct("bob")
        .await
        .unwrap();
    let (alice, bob) = (live(&base, &alice_t).await, live(&base, &bob_t).await);
    for i in 0..3 {
        alice
            .send(&conv, &format!("a{i}"), &format!("alice says ajolote{i}"))
            .await
            .unwrap();
        bob.send(&conv, &format!("b{i}"), &format!("bob says tlacuache{i}"))
            .await
            .unwrap();
    }
    drop((alice, bob));
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let alice_keys = embedded_keys_of(dir.path(), "alice").await;
    assert_eq!(alice_keys.len(), 3);
    let log_dir = dir.path().join("parley-data/log");
    let on_disk = |needle: &[u8]| files_holding(&log_dir, "", needle).1;
    assert!(
        !on_disk(&alice_keys[0]).is_empty(),
        "alice's key on disk before"
    );

    let mut second = dev_embedded(dir.path(), port, "second", &env);
    wait_ready(&base).await;
    // `--dev-auth` signs with a secret of each run.
    let (alice_t, bob_t) = (token(&base, "alice").await, token(&base, "bob").await);
    let done = Api::new(&base, &alice_t)
        .ok(reqwest::Method::DELETE, "/v1/users/alice/content", None)
        .await
        .expect("erased");
    assert_eq!(done["erased"], true);
    let bob_api = Api::new(&base, &bob_t);
    let all = bob_api.all_messages(&conv).await.unwrap();
    let alices: Vec<(bool, String)> = all
        .iter()
        .filter(|m| m.sender_id == "alice")
        .map(|m| (m.deleted, m.body.clone()))
        .collect();
    assert_eq!(alices, vec![(true, String::new()); 3]);
    // The tombstones are written, and a few maintenance rounds compact them in.
    tokio::time::sleep(Duration::from_secs(3)).await;
    second.child.kill().unwrap();
    second.child.wait().unwrap();
    assert!(embedded_keys_of(dir.path(), "alice").await.is_empty());
    assert_eq!(embedded_keys_of(dir.path(), "bob").await.len(), 3);
    for k in &alice_keys {
        assert!(on_disk(k).is_empty(), "an erased key in {:?}", on_disk(k));
    }
}

/// A sealed message whose key append failed (here: never made) is not lost: a projector
/// writes its key again from the copy wrapped under its gateway's transit key. And no
/// read hands the message out without its text meanwhile (a client would keep it so):
/// the first history read after the append waits for the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_whose_key_never_came_gets_it_written_again() {
    use parley_schemas::sealed::{ContentKey, Kek};
    use parley_schemas::{encode, ids, DataKey, MessagePosted, Meta, TransitKey};
    let options = Options {
        env: vec![("PARLEY_KEK".into(), KEK.into())],
        ..Options::gateways(1)
    };
    let stack = Processes::start_with("rekey", options).await;
    let g = &stack.gateways[0];
    let amy_t = token(g, "amy").await;
    let amy_api = Api::new(g, &amy_t);
    let conv = amy_api.create_direct("bob").await.unwrap();
    let log = common::stack::kafka().await;
    // What a gateway killed between its two appends leaves: a transit key, and the
    // message, but no data key.
    let kek = Kek::parse(KEK).unwrap();
    let transit = ContentKey::generate();
    let transit_id = TransitKey::id_of(63, 1, &uuid::Uuid::new_v4());
    let (v, wrapped) = kek.wrap(&transit_id, &transit);
    let record = TransitKey {
        meta: Meta::new("gateway:63"),
        key_id: transit_id.clone(),
        expires_at: parley_schemas::now_millis() + 3_600_000,
        kek_version: v as i32,
        wrapped,
    };
    log.append(
        &stack.topics.transit_keys,
        transit_id.as_bytes(),
        Some(&encode(&record).unwrap()),
    )
    .await
    .unwrap();
    let mut m = MessagePosted {
        meta: Meta::new("amy"),
        conversation_id: conv.clone(),
        message_id: ids::message_id("amy", "lost-key"),
        client_msg_id: "lost-key".into(),
        body: "the key of tepetlatl never came".into(),
        reply_to: None,
        attachments: Vec::new(),
        sealed: None,
    };
    let key_id = DataKey::id_of(&conv, &m.meta.event_id);
    m.seal(
        key_id.clone(),
        &ContentKey::generate(),
        Some((&transit_id, &transit)),
    );
    let value = parley_schemas::AnyRecord::from(m).encode().unwrap();
    log.append(&stack.topics.events, conv.as_bytes(), Some(&value))
        .await
        .unwrap();
    let first = amy_api.all_messages(&conv).await.unwrap();
    let bodies: Vec<&str> = first.iter().map(|x| x.body.as_str()).collect();
    assert_eq!(bodies, ["the key of tepetlatl never came"]);
    let written = records(&*log, &stack.topics.keys).await;
    assert!(written
        .iter()
        .any(|(k, _)| k.as_deref() == Some(key_id.as_bytes())));
}

/// Disappearing messages, in a direct conversation where either member sets them: a
/// message sent while they are on is gone from history once its time has come, and its
/// data key is erased in the log; one sent before stays; turned off, new ones stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disappearing_messages_go_with_their_keys() {
    use parley_schemas::MessagePosted;
    let options = Options {
        env: vec![("PARLEY_KEK".into(), KEK.into())],
        ..Options::gateways(1)
    };
    let stack = Processes::start_with("disappear", options).await;
    let g = &stack.gateways[0];
    let (amy_t, bob_t) = (token(g, "amy").await, token(g, "bob").await);
    let (amy_api, bob_api) = (Api::new(g, &amy_t), Api::new(g, &bob_t));
    let conv = amy_api.create_direct("bob").await.unwrap();
    let amy = live(g, &amy_t).await;
    let before = amy
        .send(&conv, "before", "this stays: quetzal")
        .await
        .unwrap();
    let settings = format!("/v1/conversations/{conv}");
    let set = |api: &Api, body: serde_json::Value| {
        let (api, path) = (api.clone(), settings.clone());
        async move {
            api.call(reqwest::Method::PATCH, &path, Some(body))
                .await
                .unwrap()
        }
    };
    // Refused, and nothing changed: a direct conversation has no full_history, and a
    // year is the longest.
    let refused = set(&bob_api, serde_json::json!({"full_history": true}))
        .await
        .unwrap_err();
    assert_eq!(refused.status.as_u16(), 400, "{}", refused.body);
    let refused = set(
        &bob_api,
        serde_json::json!({"disappear_after_s": 40_000_000}),
    )
    .await
    .unwrap_err();
    assert_eq!(refused.status.as_u16(), 400, "{}", refused.body);
    // Bob turns them on.
    let on = set(&bob_api, serde_json::json!({"disappear_after_s": 3}))
        .await
        .expect("either member sets it");
    assert_eq!(on["disappear_after_s"], 3);
    let shown = amy_api
        .ok(reqwest::Method::GET, &settings, None)
        .await
        .unwrap();
    assert_eq!(shown["disappear_after_ms"], 3_000, "{shown}");
    let gone = amy.send(&conv, "gone", "this goes: axolotl").await.unwrap();
    let page = bob_api.all_messages(&conv).await.unwrap();
    let m = page.iter().find(|m| m.seq == gone.seq).unwrap();
    assert_eq!(m.body, "this goes: axolotl");
    assert_eq!(m.expires_at, Some(m.ts + 3_000));
    let kept = page.iter().find(|m| m.seq == before.seq).unwrap();
    assert_eq!(kept.expires_at, None);
    eventually("the message disappears from history", LONG, || async {
        bob_api.all_messages(&conv).await.is_ok_and(|all| {
            all.iter()
                .any(|m| m.seq == gone.seq && m.deleted && m.body.is_empty())
        })
    })
    .await;
    let all = amy_api.all_messages(&conv).await.unwrap();
    let bodies: Vec<(&str, bool)> = all.iter().map(|m| (m.body.as_str(), m.deleted)).collect();
    assert_eq!(bodies, [("this stays: quetzal", false), ("", true)]);
    // Its data key has a tombstone in the log; the other's has none.
    let log = common::stack::kafka().await;
    let key_of = |cmid: &str| {
        let (log, topic, cmid) = (log.clone(), stack.topics.events.clone(), cmid.to_string());
        async move {
            records(&*log, &topic)
                .await
                .into_iter()
                .filter_map(|(_, v)| match decode_any(&v?).ok()? {
                    AnyRecord::MessagePosted(MessagePosted {
                        client_msg_id,
                        sealed: Some(s),
                        ..
                    }) if client_msg_id == cmid => Some(s.key_id),
                    _ => None,
                })
                .next()
                .expect("the message is in the log, sealed")
        }
    };
    let (gone_key, kept_key) = (key_of("gone").await, key_of("before").await);
    let tombstoned = |id: String| {
        let (log, topic) = (log.clone(), stack.topics.keys.clone());
        async move {
            records(&*log, &topic)
                .await
                .iter()
                .any(|(k, v)| k.as_deref() == Some(id.as_bytes()) && v.is_none())
        }
    };
    eventually("its key is erased in the log", LONG, || {
        tombstoned(gone_key.clone())
    })
    .await;
    assert!(!tombstoned(kept_key).await);
    // Turned off: a new message stays.
    let off = set(&amy_api, serde_json::json!({"disappear_after_s": 0}))
        .await
        .unwrap();
    assert_eq!(off["disappear_after_s"], serde_json::Value::Null);
    let after = amy.send(&conv, "after", "this stays too").await.unwrap();
    let all = bob_api.all_messages(&conv).await.unwrap();
    let m = all.iter().find(|m| m.seq == after.seq).unwrap();
    assert_eq!((m.body.as_str(), m.expires_at), ("this stays too", None));
}

/// With sealed bodies, a file's name is sealed too: the log holds none of it, readers
/// see it (live and in history), an edit of the text keeps it, and deleting the message
/// erases the key it is sealed under.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_messages_file_names_are_sealed_too() {
    use parley_schemas::MessagePosted;
    let mut options = Options::gateways(1);
    options.env.extend(crate::attachments::s3_env());
    options.env.push(("PARLEY_KEK".into(), KEK.into()));
    let stack = Processes::start_with("sealed-files", options).await;
    let g = &stack.gateways[0];
    let (amy_t, bob_t) = (token(g, "amy").await, token(g, "bob").await);
    let (amy_api, bob_api) = (Api::new(g, &amy_t), Api::new(g, &bob_t));
    let conv = amy_api.create_direct("bob").await.unwrap();
    let amy = live(g, &amy_t).await;
    let bob = live(g, &bob_t).await;
    const NAME: &str = "tlaloc-secret-plan.txt";
    let file = amy_api
        .upload(&conv, NAME, "text/plain", b"the plan".to_vec())
        .await
        .unwrap();
    let sent = amy
        .send_files(&conv, "f1", "see the file", vec![file])
        .await
        .unwrap();
    bob.wait_for("bob has the file's name, live", LONG, |s| {
        s.messages(&conv)
            .iter()
            .any(|m| m.attachments.first().is_some_and(|a| a.name == NAME))
    })
    .await
    .unwrap();
    let name_in_history = || async {
        let all = bob_api.all_messages(&conv).await.unwrap();
        let m = all.into_iter().find(|m| m.seq == sent.seq).unwrap();
        (m.body, m.attachments.first().map(|a| a.name.clone()))
    };
    assert_eq!(
        name_in_history().await,
        ("see the file".into(), Some(NAME.into()))
    );
    // The log holds the name sealed, and nowhere in plain.
    let log = common::stack::kafka().await;
    let events = records(&*log, &stack.topics.events).await;
    assert!(!events
        .iter()
        .any(|(_, v)| v.as_deref().is_some_and(|v| contains(v, "tlaloc"))));
    let posted = events
        .iter()
        .find_map(|(_, v)| match decode_any(v.as_deref()?).ok()? {
            AnyRecord::MessagePosted(m @ MessagePosted { .. }) if m.client_msg_id == "f1" => {
                Some(m)
            }
            _ => None,
        })
        .unwrap();
    assert!(posted.attachments[0]
        .name
        .starts_with(parley_schemas::sealed::SEALED_NAME));
    let key_id = posted.sealed.unwrap().key_id;
    // An edit changes the text; the file keeps its name.
    amy_api
        .ok(
            reqwest::Method::PATCH,
            &format!("/v1/conversations/{conv}/messages/{}", sent.seq),
            Some(serde_json::json!({"body": "see the file, again"})),
        )
        .await
        .unwrap();
    assert_eq!(
        name_in_history().await,
        ("see the file, again".into(), Some(NAME.into()))
    );
    // Deleted for everyone: the key its name is sealed under is erased.
    amy_api
        .ok(
            reqwest::Method::DELETE,
            &format!("/v1/conversations/{conv}/messages/{}", sent.seq),
            None,
        )
        .await
        .unwrap();
    eventually("the name's key is erased in the log", LONG, || async {
        records(&*log, &stack.topics.keys)
            .await
            .iter()
            .any(|(k, v)| k.as_deref() == Some(key_id.as_bytes()) && v.is_none())
    })
    .await;
}
