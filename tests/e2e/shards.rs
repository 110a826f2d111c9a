//! Sharded, replicated views: projectors as 2 shards × 2 replicas, found by gateways
//! and fanout-workers in the directory topic, every role a separate process against
//! the real broker. One replica of each shard is SIGKILLed under traffic; clients see
//! nothing but latency.

use crate::common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::chat::{self, Member};
use common::stack::{Options, Processes, PARTITIONS};
use common::{eventually, live, token, LONG};
use parley_client::{Api, Poller};
use parley_sequencer::partition::partition_for_key;
use tokio_util::sync::CancellationToken;

const SHARDS: usize = 2;

fn shard_of(conversation: &str) -> usize {
    partition_for_key(conversation.as_bytes(), PARTITIONS) as usize % SHARDS
}

/// The replica of `shard` that callers use while it is healthy: the one whose URL sorts
/// first (all are ready).
fn preferred(stack: &Processes, shard: usize) -> usize {
    (0..stack.projectors.len())
        .filter(|i| stack.projectors[*i].shard == shard)
        .min_by_key(|i| stack.projectors[*i].url.clone())
        .unwrap()
}

/// Whether every live replica has applied all that `events` holds now.
async fn caught_up(stack: &Processes, which: &[usize]) -> bool {
    let log = common::stack::kafka().await;
    let ends = log.end_offsets(&stack.topics.events).await.unwrap();
    for i in which {
        let url = format!("{}/v1/status", stack.projectors[*i].url);
        let Ok(r) = common::stack::projector_get(&url).await else {
            return false;
        };
        let Ok(status) = r.json::<serde_json::Value>().await else {
            return false;
        };
        let Some(applied) = status["applied"].as_object() else {
            return false;
        };
        for (p, at) in applied {
            let p: usize = p.parse().unwrap();
            if at.as_i64().unwrap_or(0) < ends[p] {
                return false;
            }
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_of_two_replicas_lose_one_replica_each_and_clients_see_nothing() {
    let options = Options {
        shards: Some((SHARDS, 2)),
        ..Options::gateways(2)
    };
    let mut stack = Processes::start_with("shards", options).await;
    let g = stack.gateways[0].clone();

    // Amy's direct conversations, until both shards hold some.
    let amy = token(&g, "amy").await;
    let amy_api = Api::new(&g, &amy);
    let mut convs: Vec<(String, String)> = Vec::new(); // (partner, conversation)
    for i in 0..40 {
        let partner = format!("p{i}");
        let c = amy_api.create_direct(&partner).await.unwrap();
        convs.push((partner, c));
        let shards: BTreeSet<usize> = convs.iter().map(|(_, c)| shard_of(c)).collect();
        if shards.len() == SHARDS && convs.len() >= 4 {
            break;
        }
    }
    let shards: BTreeSet<usize> = convs.iter().map(|(_, c)| shard_of(c)).collect();
    assert_eq!(shards.len(), SHARDS, "amy's conversations span both shards");

    // A complete conversation list, gathered from both shards.
    let first_list = listed(&amy_api).await;
    let created: BTreeSet<String> = convs.iter().map(|(_, c)| c.clone()).collect();
    assert_eq!(first_list, created, "amy's list holds every conversation");

    // Amy is offline: each partner's message waits in her inbox, which lives on one
    // shard while the conversations live on both.
    for (partner, c) in &convs {
        let t = token(&g, partner).await;
        let s = live(&g, &t).await;
        s.send(c, &format!("{partner}-hello"), "hello amy")
            .await
            .expect("sent");
        s.close().await;
    }
    eventually(
        "amy's inbox holds one entry per conversation",
        LONG,
        || async {
            let entries = amy_api.inbox().await.unwrap();
            let from: BTreeSet<String> = entries
                .iter()
                .map(|e| e["conversation_id"].as_str().unwrap().to_string())
                .collect();
            from == created
        },
    )
    .await;

    // Traffic: amy and her first partners chat on conversations of both shards.
    let picked: Vec<(String, String)> = {
        let mut by_shard: Vec<(String, String)> = Vec::new();
        for s in 0..SHARDS {
            by_shard.extend(
                convs
                    .iter()
                    .filter(|(_, c)| shard_of(c) == s)
                    .take(1)
                    .cloned(),
            );
        }
        by_shard
    };
    let mut members = vec![Member {
        user: "amy".into(),
        token: amy.clone(),
        conversations: picked.iter().map(|(_, c)| c.clone()).collect(),
        home: 0,
    }];
    for (i, (partner, c)) in picked.iter().enumerate() {
        members.push(Member {
            user: partner.clone(),
            token: token(&g, partner).await,
            conversations: vec![c.clone()],
            home: (i + 1) % 2,
        });
    }
    let sending = CancellationToken::new();
    let (every, settle) = (Duration::from_millis(40), Duration::from_secs(45));
    let clients = chat::start(&stack.gateways, &members, &sending, every, settle);

    // SIGKILL the replica each shard's callers use.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let first: Vec<usize> = (0..SHARDS).map(|s| preferred(&stack, s)).collect();
    for i in &first {
        stack.projectors[*i].proc.kill();
    }
    eprintln!("killed replicas {first:?}");

    // Meanwhile: sync, history and long-poll on both shards answer.
    let (partner, c0) = &picked[0];
    let (_, c1) = &picked[1];
    let partner_token = token(&g, partner).await;
    let fresh = live(&stack.gateways[1], &partner_token).await;
    fresh
        .sync(LONG)
        .await
        .expect("sync with a replica of each shard down");
    for c in [c0, c1] {
        let page = amy_api.history(c, None, None, 5).await.expect("history");
        assert!(!page.messages.is_empty(), "history of {c}");
    }
    fresh.close().await;
    let mut poller = Poller::new(&stack.gateways, &amy, "amy");
    let mut polled = 0;
    for _ in 0..20 {
        polled += poller
            .poll(Duration::from_secs(2))
            .await
            .expect("long-poll")
            .messages;
        if polled > 0 && !poller.store.messages(c1).is_empty() {
            break;
        }
    }
    assert!(polled > 0, "long-poll brought messages");

    // The killed replicas come back, catch up, and serve again: then the others go.
    for i in &first {
        stack.restart_projector(*i).await;
    }
    eventually("the restarted replicas caught up", LONG, || {
        caught_up(&stack, &first)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let second: Vec<usize> = (0..stack.projectors.len())
        .filter(|i| !first.contains(i))
        .collect();
    for i in &second {
        stack.projectors[*i].proc.kill();
    }
    eprintln!("killed replicas {second:?}");
    tokio::time::sleep(Duration::from_secs(4)).await;
    sending.cancel();

    let mut outcomes = Vec::new();
    for c in clients {
        outcomes.push(c.await.expect("client task"));
    }
    let acked: usize = outcomes.iter().map(|o| o.acked.len()).sum();
    eprintln!("{acked} messages acked");
    // Every acked message, in order, once — served at the end by the replicas that
    // were restarted.
    chat::check(&members, &outcomes);
    // The list, from the restarted replicas, is still complete.
    assert_eq!(listed(&amy_api).await, created);
}

/// The ids in the caller's conversation list.
async fn listed(api: &Api) -> BTreeSet<String> {
    api.conversations()
        .await
        .unwrap()
        .iter()
        .map(|c| c["conversation_id"].as_str().unwrap().to_string())
        .collect()
}

/// Second review, finding 6: the replica callers prefer (its URL sorts first) applies
/// each batch 20 s late, yet keeps announcing itself as ready. New sessions must not
/// wait on it: all 20 get `ready`, their sync and their conversation list.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_that_stalls_is_passed_over_and_every_new_session_gets_ready() {
    let options = Options {
        shards: Some((1, 2)),
        replica_args: vec![(
            (0, 0),
            vec!["--debug-apply-delay-ms".into(), "20000".into()],
        )],
        ..Options::gateways(1)
    };
    let stack = Processes::start_with("stalled-replica", options).await;
    let g = stack.gateways[0].clone();
    // Conversations the stalled replica will apply 20 s late (it announced itself ready
    // before any of them: its log was empty).
    let mut users = Vec::new();
    for i in 0..20 {
        let user = format!("u{i}");
        let t = token(&g, &user).await;
        let conv = Api::new(&g, &t).create_direct("hub").await.unwrap();
        users.push((user, t, conv));
    }
    let started = std::time::Instant::now();
    let sessions = futures::future::join_all(users.iter().map(|(user, t, conv)| {
        let g = g.clone();
        async move {
            let s = parley_client::Session::connect(&g, t)
                .await
                .expect("connect");
            assert!(
                s.ready(LONG).await.expect("ready"),
                "{user}'s session is not live"
            );
            s.sync(LONG)
                .await
                .unwrap_or_else(|e| panic!("{user}'s sync: {e}"));
            let list = listed(&Api::new(&g, t)).await;
            assert!(list.contains(conv), "{user}'s list: {list:?}");
            s
        }
    }))
    .await;
    let took = started.elapsed();
    eprintln!("20 sessions ready, synced and listed in {took:?}");
    assert_eq!(sessions.len(), 20);
    assert!(
        took < Duration::from_secs(20),
        "the sessions waited for the stalled replica: {took:?}"
    );
}

/// Second review, finding 7: a replica that lost its disk comes back under the same
/// URL and rebuilds its views slowly. A gateway that had seen it caught up before must
/// not take it for caught up now: a read it serves is complete, or it is refused
/// (`unavailable`), never short.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_rebuilt_under_the_same_url_is_not_taken_for_caught_up() {
    let options = Options {
        shards: Some((1, 2)),
        ..Options::gateways(1)
    };
    let mut stack = Processes::start_with("rebuilt-replica", options).await;
    let g = stack.gateways[0].clone();
    let amy = token(&g, "amy").await;
    let amy_api = Api::new(&g, &amy);
    let conv = amy_api.create_direct("bob").await.unwrap();
    let s = live(&g, &amy).await;
    for i in 0..30 {
        s.send(&conv, &format!("m{i}"), "before").await.unwrap();
    }
    // Replica 0 goes: the gateway's reads and waits go to replica 1.
    stack.projectors[0].proc.kill();
    for i in 30..40 {
        s.send(&conv, &format!("m{i}"), "on replica 1")
            .await
            .unwrap();
    }
    // (A send is confirmed by its routed copy, not by the views: history has them a
    // moment later.)
    eventually("replica 1 holds all 40", LONG, || async {
        amy_api
            .history(&conv, None, None, 100)
            .await
            .is_ok_and(|page| page.messages.len() == 40)
    })
    .await;
    // Replica 1 loses its disk and comes back, rebuilding at a batch per 4 s; replica 0
    // stays down, so replica 1 is the only one left to ask.
    stack
        .rebuild_projector(1, &["--debug-apply-delay-ms", "4000"])
        .await;
    // Reads at once (the gateway's membership check is still cached from the read
    // above, so only the views' progress stands between a read and a short page).
    for _ in 0..8 {
        match amy_api
            .call(
                reqwest::Method::GET,
                &format!("/v1/conversations/{conv}/messages?limit=100"),
                None,
            )
            .await
            .unwrap()
        {
            Ok(page) => {
                let n = page["messages"].as_array().map_or(0, Vec::len);
                assert_eq!(n, 40, "a short page from a rebuilding replica: {page}");
            }
            Err(refused) => assert_eq!(refused.code(), "unavailable", "{}", refused.body),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    drop(s);
}
