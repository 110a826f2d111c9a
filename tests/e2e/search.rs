//! Search as a view (real broker, every role real): found right after sending; only
//! what each reader may read now (members, from where they read; not outsiders, not
//! removed members); edits and deletions reflected; pages that resume; clear errors
//! for bad queries; the same answers from a replica rebuilt from offset 0; a killed
//! replica costs a retry, not an error.

use crate::common;

use std::time::Duration;

use common::stack::{InProcess, Options, Processes};
use common::{live, token, user};
use parley_client::{Api, SearchOptions, SearchResult};

const LONG: Duration = Duration::from_secs(60);

async fn api(base: &str, name: &str) -> Api {
    Api::new(base, &Api::dev_token(base, name).await.unwrap())
}

/// (conversation, seq) of every result of `q` for `who`, newest first.
async fn found(who: &Api, q: &str) -> Vec<(String, i64)> {
    let page = who
        .search(q, &SearchOptions::default())
        .await
        .unwrap_or_else(|e| panic!("search {q:?}: {e}"));
    page.results
        .into_iter()
        .map(|r| (r.conversation_id, r.seq))
        .collect()
}

/// The status and error code of a search refused.
async fn refused(who: &Api, query: &str) -> (u16, String) {
    let r = who
        .call(reqwest::Method::GET, &format!("/v1/search?{query}"), None)
        .await
        .unwrap()
        .expect_err(query);
    (r.status.as_u16(), r.code().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_finds_at_once_only_what_each_reader_may_read_now() {
    let stack = InProcess::start("search", 1).await;
    let g = &stack.gateways[0];
    let (amy_api, amy) = user(g, "amy").await;
    let (bob_api, bob) = user(g, "bob").await;
    let cat = api(g, "cat").await;
    let dan = api(g, "dan").await;
    let eve = api(g, "eve").await;
    let team = amy_api
        .create_group("launch", &["bob", "cat"])
        .await
        .unwrap();

    // Found right after the send is acknowledged, by the sender and by a member.
    let first = amy
        .send(
            &team,
            "s-1",
            "Where did we say the LAUNCH date was? At the café.",
        )
        .await
        .unwrap()
        .seq;
    assert_eq!(found(&amy_api, "launch").await, [(team.clone(), first)]);
    assert_eq!(
        found(&bob_api, "launch date").await,
        [(team.clone(), first)]
    );
    assert_eq!(found(&bob_api, "cafe").await, [(team.clone(), first)]);
    assert_eq!(
        found(&cat, "\"launch date\"").await,
        [(team.clone(), first)]
    );
    assert!(found(&cat, "\"date launch\"").await.is_empty());
    // An outsider finds nothing, and is refused a conversation they are not in.
    assert!(found(&eve, "launch").await.is_empty());
    assert_eq!(
        refused(&eve, &format!("q=launch&conversation_id={team}")).await,
        (403, "not_member".into())
    );

    // The snippet marks the words found.
    let page = bob_api
        .search("launch", &SearchOptions::default())
        .await
        .unwrap();
    let hit: &SearchResult = &page.results[0];
    assert_eq!(hit.sender_id, "amy");
    assert!(hit.text().contains("LAUNCH date"), "{hit:?}");
    assert!(
        hit.snippet.iter().any(|p| p.hit && p.text == "LAUNCH"),
        "{hit:?}"
    );

    // cat is removed: nothing of the conversation is found by them any more, neither
    // what was said before nor after.
    amy_api
        .ok(
            reqwest::Method::DELETE,
            &format!("/v1/conversations/{team}/members/cat"),
            None,
        )
        .await
        .unwrap();
    let second = bob
        .send(&team, "s-2", "launch moved, keep it quiet")
        .await
        .unwrap()
        .seq;
    assert!(found(&cat, "launch").await.is_empty());
    // dan joins: he reads from his join on, and finds only what was said since.
    amy_api.add_members(&team, &["dan".into()]).await.unwrap();
    assert!(found(&dan, "launch").await.is_empty());
    let third = amy
        .send(&team, "s-3", "welcome dan, the launch is on Friday")
        .await
        .unwrap()
        .seq;
    assert_eq!(found(&dan, "launch").await, [(team.clone(), third)]);
    // Newest first for those who read it all.
    assert_eq!(
        found(&bob_api, "launch").await,
        [
            (team.clone(), third),
            (team.clone(), second),
            (team.clone(), first)
        ]
    );

    // Edits and deletions: the current text is what is found.
    amy.edit(&team, third, "welcome dan, the launch is on Monday", LONG)
        .await
        .unwrap();
    assert_eq!(found(&bob_api, "monday").await, [(team.clone(), third)]);
    assert!(found(&bob_api, "friday").await.is_empty());
    bob.delete(&team, second, LONG).await.unwrap();
    assert_eq!(
        found(&bob_api, "launch").await,
        [(team.clone(), third), (team.clone(), first)]
    );
    assert!(found(&bob_api, "quiet").await.is_empty());

    // Filters, relevance, and pages that resume where the last one ended.
    assert_eq!(found(&bob_api, "launch from:amy").await.len(), 2);
    assert_eq!(found(&bob_api, &format!("launch in:{team}")).await.len(), 2);
    for i in 0..5 {
        bob.send(&team, &format!("p-{i}"), &format!("paging test {i}"))
            .await
            .unwrap();
    }
    for relevance in [false, true] {
        let mut all = Vec::new();
        let mut cursor = None;
        loop {
            let o = SearchOptions {
                limit: Some(2),
                cursor: cursor.clone(),
                relevance,
                ..SearchOptions::default()
            };
            let page = bob_api.search("paging", &o).await.unwrap();
            assert!(page.results.len() <= 2);
            all.extend(page.results.into_iter().map(|r| r.seq));
            cursor = page.next_cursor;
            if cursor.is_none() {
                break;
            }
        }
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 5, "every result once (relevance: {relevance})");
    }

    // Bad queries get a clear 400.
    for bad in [
        "q=%22open",
        "q=title%3Ax",
        "q=",
        "q=x&sort=best",
        "q=x&limit=0",
        "q=x&cursor=zz",
    ] {
        assert_eq!(
            refused(&bob_api, bad).await,
            (400, "bad_request".into()),
            "{bad}"
        );
    }
    amy.close().await;
    bob.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuilt_replica_answers_the_same_and_a_killed_one_costs_a_retry() {
    let options = Options {
        shards: Some((1, 2)),
        ..Options::gateways(1)
    };
    let mut stack = Processes::start_with("search-replicas", options).await;
    let g = stack.gateways[0].clone();
    let amy = token(&g, "amy").await;
    let amy_api = Api::new(&g, &amy);
    let s = live(&g, &amy).await;
    let mut convs = Vec::new();
    for i in 0..4 {
        convs.push(amy_api.create_direct(&format!("p{i}")).await.unwrap());
    }
    for i in 0..40 {
        let c = &convs[i % convs.len()];
        let body = format!(
            "alpha {} note {i} {}",
            ["red", "green", "blue"][i % 3],
            "beta ".repeat(i % 4)
        );
        s.send(c, &format!("m-{i}"), &body).await.unwrap();
    }
    let first = s.send(&convs[0], "last", "alpha omega").await.unwrap().seq;
    let edited = s
        .edit(&convs[0], first, "alpha omega edited", LONG)
        .await
        .unwrap();
    assert!(edited > first);
    let all = |relevance| SearchOptions {
        limit: Some(100),
        relevance,
        ..SearchOptions::default()
    };
    let answer = |page: parley_client::SearchResults| -> Vec<(String, i64, String)> {
        page.results
            .into_iter()
            .map(|r| {
                let text = r.text();
                (r.conversation_id, r.seq, text)
            })
            .collect()
    };
    let newest = answer(amy_api.search("alpha", &all(false)).await.unwrap());
    let green = answer(amy_api.search("green", &all(false)).await.unwrap());
    assert_eq!(newest.len(), 41);
    assert!(newest[0].2.contains("edited"), "{:?}", newest[0]);

    // The preferred replica is killed: the search goes to the other one, unharmed.
    let preferred = (0..2)
        .min_by_key(|i| stack.projectors[*i].url.clone())
        .unwrap();
    let other = 1 - preferred;
    stack.projectors[preferred].proc.kill();
    assert_eq!(
        answer(amy_api.search("alpha", &all(false)).await.unwrap()),
        newest
    );

    // It comes back with nothing (a lost disk): its views and index are rebuilt from
    // offset 0. The other one is killed: the rebuilt one answers, the same.
    stack.rebuild_projector(preferred, &[]).await;
    stack.projectors[other].proc.kill();
    assert_eq!(
        answer(amy_api.search("alpha", &all(false)).await.unwrap()),
        newest
    );
    assert_eq!(
        answer(amy_api.search("green", &all(false)).await.unwrap()),
        green
    );
    let mut by_relevance = answer(amy_api.search("alpha", &all(true)).await.unwrap());
    by_relevance.sort();
    let mut expected = newest.clone();
    expected.sort();
    assert_eq!(by_relevance, expected);
    s.close().await;
}
