//! The projector is killed mid-stream and restarted: it resumes from the offsets it
//! stored with its views, and its views equal a rebuild from offset 0 (same checksum).

use crate::common;

use std::time::Duration;

use common::stack::{free_port, kafka, projector_get, provision, settings, wait_healthy, Proc};
use parley_schemas::{encode, ids, ConversationCreated, ConversationKind, MessagePosted, Meta};
use serde_json::Value;

async fn get(url: &str) -> Value {
    projector_get(url).await.unwrap().json().await.unwrap()
}

/// Alice creates group `id`, alone in it.
fn create(id: &str) -> ConversationCreated {
    ConversationCreated {
        meta: Meta::new("alice"),
        conversation_id: id.into(),
        kind: ConversationKind::Group,
        title: None,
        members: vec!["alice".into()],
    }
}

/// Waits until the projector at `url` has applied everything up to `ends`.
async fn caught_up(url: &str, ends: &[i64]) -> Value {
    for _ in 0..600 {
        let v = get(&format!("{url}/v1/checksum")).await;
        let applied = &v["applied"];
        if ends
            .iter()
            .enumerate()
            .all(|(p, e)| applied[p.to_string()].as_i64().unwrap_or(0) >= *e)
        {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} did not catch up to {ends:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_projector_resumes_and_equals_a_rebuild() {
    let log = kafka().await;
    let prefix = common::fresh_prefix("projector");
    provision(&*log, &prefix).await;
    let topic = settings(&prefix).names().events;
    let convs: Vec<String> = (0..6).map(|i| format!("conv-{i}")).collect();
    for c in &convs {
        let created = ConversationCreated {
            meta: Meta::new("alice"),
            conversation_id: c.clone(),
            kind: ConversationKind::Group,
            title: Some(c.clone()),
            members: vec!["alice".into(), "bob".into()],
        };
        log.append(&topic, c.as_bytes(), Some(&encode(&created).unwrap()))
            .await
            .unwrap();
    }

    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("resumed");
    let addr = free_port().to_string();
    let url = format!("http://{addr}");
    let args = |d: &std::path::Path, a: &str| -> Vec<String> {
        vec![
            "projector".into(),
            "--http".into(),
            a.into(),
            "--data-dir".into(),
            d.to_str().unwrap().into(),
        ]
    };
    let spawn = |d: &std::path::Path, a: &str, name: &str| {
        let v = args(d, a);
        let refs: Vec<&str> = v.iter().map(String::as_str).collect();
        Proc::spawn(name, &prefix, &refs)
    };
    let mut projector = spawn(&dir, &addr, "projector");
    wait_healthy(&url).await;

    // A producer appends 1500 posts: repeats of earlier message ids, and posts by a
    // non-member, mixed in; the projector is killed in the middle of it.
    let producer = {
        let (log, topic, convs) = (log.clone(), topic.clone(), convs.clone());
        tokio::spawn(async move {
            for i in 0..1500u32 {
                let (c, sender, cmid) = match i % 10 {
                    // A retry of message i-7 (alice's, in its conversation).
                    7 => (
                        &convs[((i - 7) % 6) as usize],
                        "alice",
                        format!("m-{}", i - 7),
                    ),
                    // Not a member.
                    9 => (&convs[(i % 6) as usize], "mallory", format!("m-{i}")),
                    _ => (
                        &convs[(i % 6) as usize],
                        if i % 2 == 0 { "alice" } else { "bob" },
                        format!("m-{i}"),
                    ),
                };
                let m = MessagePosted {
                    meta: Meta::new(sender),
                    conversation_id: c.clone(),
                    message_id: ids::message_id(sender, &cmid),
                    client_msg_id: cmid,
                    body: format!("message {i}"),
                    reply_to: None,
                    attachments: Vec::new(),
                    sealed: None,
                };
                log.append(&topic, c.as_bytes(), Some(&encode(&m).unwrap()))
                    .await
                    .unwrap();
                if i % 50 == 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        })
    };
    // Kill it once it has applied some of the posts, while more are coming.
    let mut applied = 0;
    for _ in 0..100 {
        let status = get(&format!("{url}/v1/status")).await;
        applied = status["applied"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_i64().unwrap())
            .sum::<i64>();
        if applied > 100 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(applied > 100, "the projector applied nothing");
    assert!(
        !producer.is_finished(),
        "the producer finished before the kill"
    );
    projector.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut projector = spawn(&dir, &addr, "projector-restarted");
    wait_healthy(&url).await;
    producer.await.unwrap();

    let ends = log.end_offsets(&topic).await.unwrap();
    let resumed = caught_up(&url, &ends).await;

    // A rebuild from offset 0 in a fresh directory.
    let addr2 = free_port().to_string();
    let url2 = format!("http://{addr2}");
    let _rebuild = spawn(&data.path().join("rebuilt"), &addr2, "projector-rebuild");
    wait_healthy(&url2).await;
    let rebuilt = caught_up(&url2, &ends).await;
    assert_eq!(
        resumed["checksum"], rebuilt["checksum"],
        "resumed views differ from a rebuild"
    );
    assert_eq!(resumed["applied"], rebuilt["applied"]);

    // And the views say what the rules say: no repeats, no non-member posts.
    let mut total = 0;
    for c in &convs {
        let page = get(&format!(
            "{url}/v1/conversations/{c}/messages?after=-1&limit=1000"
        ))
        .await;
        let msgs = page["messages"].as_array().unwrap();
        assert!(msgs.iter().all(|m| m["sender_id"] != "mallory"));
        let mut ids: Vec<&str> = msgs
            .iter()
            .map(|m| m["message_id"].as_str().unwrap())
            .collect();
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n, "a message id twice in {c}");
        total += n;
    }
    // 1500 posts: 150 repeats and 150 by a non-member are dropped.
    assert_eq!(total, 1200);
    projector.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_ahead_of_the_log_are_refused_or_rebuilt() {
    use parley_projector::{Projector, ProjectorConfig, Views};
    let log = kafka().await;
    let (old, new) = (
        common::fresh_prefix("ahead-old"),
        common::fresh_prefix("ahead-new"),
    );
    provision(&*log, &old).await;
    provision(&*log, &new).await;
    let old_topics = settings(&old).names();
    let created = create("c");
    let pos = log
        .append(&old_topics.events, b"c", Some(&encode(&created).unwrap()))
        .await
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("views");
    let stop = tokio_util::sync::CancellationToken::new();
    let p = Projector::start(
        ProjectorConfig::new(&dir, &old_topics),
        log.clone(),
        stop.clone(),
    )
    .await
    .unwrap();
    assert!(p
        .views()
        .wait_applied(&[(pos.partition, pos.offset + 1)], Duration::from_secs(30))
        .await
        .unwrap());
    stop.cancel();
    p.join().await.unwrap();

    // The same views against a log that never had that record (as after a reset).
    let new_topics = settings(&new).names();
    let stop = tokio_util::sync::CancellationToken::new();
    let refused = Projector::start(
        ProjectorConfig::new(&dir, &new_topics),
        log.clone(),
        stop.clone(),
    )
    .await;
    let err = refused.err().expect("refused").to_string();
    assert!(err.contains("ahead of the log"), "{err}");
    assert!(dir.exists(), "refusing changes nothing");

    let mut config = ProjectorConfig::new(&dir, &new_topics);
    config.rebuild_if_unfit = true;
    let rebuilt = Projector::start(config, log.clone(), stop.clone())
        .await
        .unwrap();
    assert!(
        rebuilt.views().conversation("c").await.unwrap().is_none(),
        "rebuilt from the new log"
    );
    stop.cancel();
    rebuilt.join().await.unwrap();
}

/// Views whose stored offsets are behind the log's start (retention deleted records
/// they never applied) are refused with a clear error; told to rebuild, the projector
/// rebuilds them from what the log holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_behind_the_log_start_are_refused_unless_told_to_rebuild() {
    use parley_projector::{Projector, ProjectorConfig, Views};
    let log = kafka().await;
    let prefix = common::fresh_prefix("behind");
    provision(&*log, &prefix).await;
    let topics = settings(&prefix).names();
    let first = log
        .append(&topics.events, b"c", Some(&encode(&create("c")).unwrap()))
        .await
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("views");
    let stop = tokio_util::sync::CancellationToken::new();
    let p = Projector::start(
        ProjectorConfig::new(&dir, &topics),
        log.clone(),
        stop.clone(),
    )
    .await
    .unwrap();
    assert!(p
        .views()
        .wait_applied(
            &[(first.partition, first.offset + 1)],
            Duration::from_secs(30)
        )
        .await
        .unwrap());
    stop.cancel();
    p.join().await.unwrap();

    // While the projector is down, two more records arrive and retention deletes them
    // (and the first) before it comes back.
    let mut last = first;
    for _ in 0..2 {
        last = log
            .append(&topics.events, b"c", Some(&encode(&create("c")).unwrap()))
            .await
            .unwrap();
    }
    delete_records_before(&topics.events, last.partition, last.offset + 1).await;

    let stop = tokio_util::sync::CancellationToken::new();
    let refused = Projector::start(
        ProjectorConfig::new(&dir, &topics),
        log.clone(),
        stop.clone(),
    )
    .await;
    let err = refused.err().expect("refused").to_string();
    assert!(err.contains("behind the log's start"), "{err}");
    assert!(
        err.contains("--rebuild"),
        "the error says what to do: {err}"
    );
    assert!(dir.exists(), "refusing changes nothing");

    let mut config = ProjectorConfig::new(&dir, &topics);
    config.rebuild_if_unfit = true;
    let rebuilt = Projector::start(config, log.clone(), stop.clone())
        .await
        .unwrap();
    assert!(
        rebuilt.views().conversation("c").await.unwrap().is_none(),
        "rebuilt from what the log holds now"
    );
    stop.cancel();
    rebuilt.join().await.unwrap();
}

/// Deletes the records of a partition before `offset`, as retention would.
async fn delete_records_before(topic: &str, partition: i32, offset: i64) {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", common::bootstrap())
        .create()
        .expect("admin client");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
        .unwrap();
    let done = admin
        .delete_records(&tpl, &AdminOptions::new())
        .await
        .expect("delete records");
    for e in done.elements() {
        e.error().expect("records deleted");
    }
}

/// Once `join` returns, the projector has let go of its views: a new projector (after a
/// restart in the same process, as the embedded `parley dev` does) opens them at once,
/// even when it stops while its lag gauges are still asking the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joined_projector_has_released_its_views() {
    use parley_projector::{Projector, ProjectorConfig};
    let log = kafka().await;
    let prefix = common::fresh_prefix("release");
    provision(&*log, &prefix).await;
    let topics = settings(&prefix).names();
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("views");
    for round in 0..10 {
        let stop = tokio_util::sync::CancellationToken::new();
        let p = Projector::start(
            ProjectorConfig::new(&dir, &topics),
            log.clone(),
            stop.clone(),
        )
        .await
        .unwrap_or_else(|e| panic!("round {round}: {e}"));
        stop.cancel();
        p.join().await.unwrap();
    }
}

/// The views gather a batch only under a stream of records: with a gather of 30 s, a
/// quiet log's record is still applied at once (before, every record waited out the
/// gather).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_logs_record_does_not_wait_for_a_gather() {
    use parley_projector::{Projector, ProjectorConfig, Views};
    let log = kafka().await;
    let prefix = common::fresh_prefix("gather");
    provision(&*log, &prefix).await;
    let topics = settings(&prefix).names();
    let data = tempfile::tempdir().unwrap();
    let mut config = ProjectorConfig::new(data.path().join("views"), &topics);
    config.gather = Duration::from_secs(30);
    let stop = tokio_util::sync::CancellationToken::new();
    let p = Projector::start(config, log.clone(), stop.clone())
        .await
        .unwrap();
    let pos = log
        .append(&topics.events, b"c", Some(&encode(&create("c")).unwrap()))
        .await
        .unwrap();
    assert!(
        p.views()
            .wait_applied(&[(pos.partition, pos.offset + 1)], Duration::from_secs(10))
            .await
            .unwrap(),
        "a lone record waited for the gather"
    );
    assert!(p.views().conversation("c").await.unwrap().is_some());
    stop.cancel();
    p.join().await.unwrap();
}
