//! Large groups take the broadcast path: one delivery per gateway slot, no recipient
//! list, no inbox entry or push job per member; each gateway finds its own members.
//! Against separate processes and the real broker.

use crate::common;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use common::stack::{appended, kafka, Options, Processes};
use common::{eventually, live, token, LONG};
use futures::future::join_all;
use parley_client::{Api, Session};
use reqwest::Method;

/// Dev tokens of `users`, a few requests at a time.
async fn tokens(base: &str, users: &[String]) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for chunk in users.chunks(50) {
        let got = join_all(
            chunk
                .iter()
                .map(|u| async move { (u.clone(), token(base, u).await) }),
        )
        .await;
        out.extend(got);
    }
    out
}

/// Live sessions of `users`, spread over the gateways, a few at a time.
async fn sessions(
    gateways: &[String],
    users: &[String],
    tokens: &HashMap<String, String>,
) -> Vec<Session> {
    let mut out = Vec::new();
    for (i, chunk) in users.chunks(50).enumerate() {
        let got = join_all(chunk.iter().enumerate().map(|(j, u)| {
            let g = &gateways[(i * 50 + j) % gateways.len()];
            live(g, &tokens[u])
        }))
        .await;
        out.extend(got);
    }
    out
}

/// Two gateways where groups of three or more take the broadcast path, dev tokens of
/// `users`, and the group "team" of amy, bob, cat and dan (created by amy).
struct Team {
    stack: Processes,
    g0: String,
    g1: String,
    tokens: HashMap<String, String>,
    conv: String,
}

impl Team {
    async fn start(name: &str, users: &[&str]) -> Team {
        let options = Options {
            fanout_args: vec!["--large-group".into(), "3".into()],
            ..Options::gateways(2)
        };
        let stack = Processes::start_with(name, options).await;
        let (g0, g1) = (stack.gateways[0].clone(), stack.gateways[1].clone());
        let names: Vec<String> = users.iter().map(|u| u.to_string()).collect();
        let tokens = tokens(&g0, &names).await;
        let conv = Api::new(&g0, &tokens["amy"])
            .create_group("team", &["bob", "cat", "dan"])
            .await
            .unwrap();
        Team {
            stack,
            g0,
            g1,
            tokens,
            conv,
        }
    }

    fn api(&self, user: &str) -> Api {
        Api::new(&self.g0, &self.tokens[user])
    }

    /// A live session of `user` at gateway 0 or 1.
    async fn live(&self, user: &str, gateway: usize) -> Session {
        let g = if gateway == 0 { &self.g0 } else { &self.g1 };
        live(g, &self.tokens[user]).await
    }
}

async fn add(api: &Api, conv: &str, members: &[String]) {
    api.add_members(conv, members).await.expect("members added");
}

/// The seqs of `conv` that arrived live at `s`, in arrival order.
fn arrived(s: &Session, conv: &str) -> Vec<i64> {
    s.arrivals()
        .into_iter()
        .filter(|m| m.conversation_id == conv)
        .map(|m| m.seq)
        .collect()
}

/// Waits until every session in `online` has `want` live, then checks that each got
/// exactly those, once each, in order.
async fn all_got_exactly(online: &[&Session], conv: &str, want: &[i64]) {
    let deadline = tokio::time::Instant::now() + LONG;
    for s in online {
        loop {
            let got = arrived(s, conv);
            if want.iter().all(|w| got.contains(w)) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{}: got {} of {} messages live",
                s.user(),
                got.len(),
                want.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Anything extra (a repeat) has had time to arrive too.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for s in online {
        assert_eq!(
            arrived(s, conv),
            want,
            "{}: not each once, in order",
            s.user()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_five_thousand_member_group_reaches_every_online_member_once_and_writes_no_inbox() {
    let stack = Processes::start("biggroup", 2).await;
    let g = stack.gateways.clone();
    let users: Vec<String> = (0..5_000).map(|i| format!("u{i:04}")).collect();
    let online_users = &users[..500];
    let tokens = tokens(&g[0], &users[..500]).await;
    let creator = Api::new(&g[0], &tokens["u0000"]);
    let members: Vec<&str> = users[1..].iter().map(String::as_str).collect();
    let conv = creator.create_group("everyone", &members).await.unwrap();

    let online = sessions(&g, online_users, &tokens).await;
    let mut sent = Vec::new();
    for n in 0..10 {
        let s = online[0]
            .send(&conv, &format!("all-{n}"), &format!("to everyone {n}"))
            .await
            .expect("sent");
        sent.push(s.seq);
    }
    let others: Vec<&Session> = online[1..].iter().collect();
    all_got_exactly(&others, &conv, &sent).await;

    // An offline member catches up with the cursor sync, not an inbox.
    let late_token = token(&g[1], "u4999").await;
    let late = live(&g[1], &late_token).await;
    late.sync(LONG).await.expect("sync");
    let held: Vec<i64> = late.messages(&conv).iter().map(|m| m.seq).collect();
    assert_eq!(held, sent, "the offline member syncs every message");
    // Its unread count comes from its read mark and history, not from inbox entries.
    let late_api = Api::new(&g[1], &late_token);
    let unread = |list: Vec<serde_json::Value>| {
        list.iter()
            .find(|c| c["conversation_id"] == conv.as_str())
            .map(|c| c["unread"].clone())
    };
    assert_eq!(
        unread(late_api.conversations().await.unwrap()),
        Some(10.into())
    );
    late_api
        .ok(
            Method::POST,
            &format!("/v1/conversations/{conv}/receipts"),
            Some(serde_json::json!({"kind": "read", "seq": sent[6]})),
        )
        .await
        .expect("read up to the seventh");
    // The read mark reaches the views a moment after the receipt is stored.
    eventually("unread falls to 3", LONG, || async {
        unread(late_api.conversations().await.unwrap()) == Some(3.into())
    })
    .await;

    let log = kafka().await;
    assert_eq!(
        appended(&*log, &stack.topics.inbox).await,
        0,
        "no inbox entry"
    );
    assert_eq!(appended(&*log, &stack.topics.push).await, 0, "no push job");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_groups_membership_changes_take_effect_at_their_log_position() {
    let team = Team::start("bigmembers", &["amy", "bob", "cat", "dan", "eve"]).await;
    let (amy_api, conv) = (team.api("amy"), team.conv.clone());
    let amy = team.live("amy", 0).await;
    let bob = team.live("bob", 1).await;
    let cat = team.live("cat", 0).await;
    // Eve is online before she is a member.
    let eve = team.live("eve", 1).await;

    let m1 = amy.send(&conv, "m1", "before").await.unwrap().seq;
    all_got_exactly(&[&bob, &cat], &conv, &[m1]).await;

    amy_api
        .ok(
            Method::DELETE,
            &format!("/v1/conversations/{conv}/members/cat"),
            None,
        )
        .await
        .expect("cat removed");
    add(&amy_api, &conv, &["eve".to_string()]).await;
    let m2 = amy.send(&conv, "m2", "after").await.unwrap().seq;
    let m3 = amy.send(&conv, "m3", "after too").await.unwrap().seq;

    all_got_exactly(&[&bob], &conv, &[m1, m2, m3]).await;
    all_got_exactly(&[&eve], &conv, &[m2, m3]).await;
    assert_eq!(
        arrived(&cat, &conv),
        vec![m1],
        "cat got nothing after her removal"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_crossing_the_threshold_loses_and_repeats_nothing() {
    // The default threshold: 1,000 members. The group grows from 900 to 1,100 while
    // messages flow.
    let stack = Processes::start("crossing", 2).await;
    let g = stack.gateways.clone();
    let users: Vec<String> = (0..1_100).map(|i| format!("c{i:04}")).collect();
    // Online: 40 original members, and the 20 who join first (online before they join).
    let mut online_users: Vec<String> = users[..40].to_vec();
    online_users.extend_from_slice(&users[900..920]);
    let tokens = tokens(&g[0], &online_users).await;
    let creator = Api::new(&g[0], &tokens["c0000"]);
    let members: Vec<&str> = users[1..900].iter().map(String::as_str).collect();
    let conv = creator.create_group("growing", &members).await.unwrap();
    let online = sessions(&g, &online_users, &tokens).await;

    let mut after_first_join = Vec::new();
    for round in 0..10 {
        let joining = &users[900 + round * 20..920 + round * 20];
        add(&creator, &conv, joining).await;
        for k in 0..2 {
            let seq = online[0]
                .send(&conv, &format!("r{round}-{k}"), "growing")
                .await
                .expect("sent")
                .seq;
            after_first_join.push(seq);
        }
    }
    // The originals got every message; the first joiners every one after their join.
    let originals: Vec<&Session> = online[1..40].iter().collect();
    all_got_exactly(&originals, &conv, &after_first_join).await;
    let joiners: Vec<&Session> = online[40..].iter().collect();
    all_got_exactly(&joiners, &conv, &after_first_join).await;

    let history: BTreeSet<i64> = creator
        .all_messages(&conv)
        .await
        .unwrap()
        .iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!(history, after_first_join.iter().copied().collect());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_groups_receipts_are_counted_and_its_typing_throttled() {
    let team = Team::start("bigsignals", &["amy", "bob", "cat", "dan"]).await;
    let conv = team.conv.clone();
    let amy = team.live("amy", 0).await;
    let bob = team.live("bob", 1).await;
    let cat = team.live("cat", 0).await;
    let dan = team.live("dan", 1).await;
    let m1 = amy.send(&conv, "m1", "read me").await.unwrap().seq;
    all_got_exactly(&[&bob, &cat, &dan], &conv, &[m1]).await;

    for s in [&bob, &cat] {
        s.send_json(serde_json::json!({"type": "read", "conversation_id": conv, "seq": m1}))
            .await
            .unwrap();
    }
    // Amy sees counts, not one receipt per member.
    amy.wait_for("receipt counts of two reads", LONG, |s| {
        s.receipt_counts(&conv)
            .is_some_and(|c| c.seq == m1 && c.read == 2 && c.delivered == 2)
    })
    .await
    .expect("receipt_counts");
    assert!(
        amy.receipts().iter().all(|r| r.user_id == "amy"),
        "no per-member receipt frames in a large group: {:?}",
        amy.receipts()
    );

    // Ten typing frames at once: at most two per second get through.
    for _ in 0..10 {
        dan.typing(&conv, true).await.unwrap();
    }
    amy.wait_for("a typing indicator from dan", LONG, |s| {
        s.typing_seen()
            .iter()
            .any(|(c, u, _)| *c == conv && u == "dan")
    })
    .await
    .expect("typing");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let seen = amy
        .typing_seen()
        .iter()
        .filter(|(c, u, _)| *c == conv && u == "dan")
        .count();
    assert!((1..=4).contains(&seen), "{seen} of 10 typing frames routed");
    assert!(
        dan.typing_seen().iter().all(|(_, u, _)| u != "dan"),
        "the typist does not see itself"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_groups_edits_deletions_and_reactions_reach_its_members_on_both_gateways() {
    let team = Team::start("bigchanges", &["amy", "bob", "cat", "dan"]).await;
    let conv = team.conv.clone();
    let amy = team.live("amy", 0).await;
    let bob = team.live("bob", 1).await;
    let cat = team.live("cat", 0).await;
    let m1 = amy.send(&conv, "m1", "helo all").await.unwrap().seq;
    let m2 = amy.send(&conv, "m2", "wrong group").await.unwrap().seq;
    all_got_exactly(&[&bob, &cat], &conv, &[m1, m2]).await;

    amy.edit(&conv, m1, "hello all", LONG).await.unwrap();
    bob.react(&conv, m1, "🎉", true, LONG).await.unwrap();
    cat.react(&conv, m1, "🎉", true, LONG).await.unwrap();
    amy.delete(&conv, m2, LONG).await.unwrap();
    // Broadcast to every slot with a member online, applied on each side.
    for s in [&amy, &bob, &cat] {
        s.wait_for("the changes", LONG, |s| {
            let held = s.messages(&conv);
            let one = held.iter().find(|m| m.seq == m1);
            let two = held.iter().find(|m| m.seq == m2);
            one.is_some_and(|m| m.body == "hello all" && m.reactions.get("🎉") == Some(&2))
                && two.is_some_and(|m| m.deleted)
        })
        .await
        .unwrap_or_else(|e| panic!("{}: {e}: {:?}", s.user(), s.messages(&conv)));
    }
    // dan, offline throughout, finds them in history.
    let page = team
        .api("dan")
        .history(&conv, None, None, 10)
        .await
        .unwrap();
    let one = page.messages.iter().find(|m| m.seq == m1).unwrap();
    assert_eq!((one.body.as_str(), one.edited), ("hello all", true));
    assert!(page.messages.iter().any(|m| m.seq == m2 && m.deleted));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_cannot_grow_beyond_its_cap() {
    let options = Options {
        env: vec![("PARLEY_MAX_GROUP_MEMBERS".into(), "4".into())],
        ..Options::gateways(1)
    };
    let stack = Processes::start_with("groupcap", options).await;
    let g = &stack.gateways[0];
    let amy = Api::new(g, &token(g, "amy").await);
    // Five at once: refused, and nothing is created.
    let too_many = amy.create_group("big", &["b", "c", "d", "e"]).await;
    let err = format!("{:?}", too_many.expect_err("five members"));
    assert!(err.contains("409") && err.contains("group_full"), "{err}");
    assert!(amy.conversations().await.unwrap().is_empty());

    let conv = amy.create_group("team", &["b", "c"]).await.unwrap();
    add(&amy, &conv, &["d".to_string()]).await;
    // A fifth member is one too many: the add is refused whole, with a clear error.
    let refused = amy
        .add_members(&conv, &["e".to_string(), "f".to_string()])
        .await
        .expect_err("beyond the cap");
    let err = format!("{refused:?}");
    assert!(err.contains("409") && err.contains("group_full"), "{err}");
    let members = amy.conversations().await.unwrap()[0]["members"].clone();
    assert_eq!(members, 4, "still four members");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_group_pushes_only_to_mentioned_or_opted_in_offline_members() {
    let team = Team::start("bigpush", &["amy", "bob"]).await;
    let conv = team.conv.clone();
    let amy = team.live("amy", 0).await;
    let bob = team.live("bob", 1).await;
    // cat opts in to every message of the group; zed, no member, cannot.
    let cat = Api::new(&team.g0, &token(&team.g0, "cat").await);
    let opted = cat
        .ok(
            Method::POST,
            &format!("/v1/conversations/{conv}/opt-in"),
            None,
        )
        .await
        .expect("cat opts in");
    assert_eq!(opted["opted_in"], true);
    let zed = Api::new(&team.g0, &token(&team.g0, "zed").await);
    let refused = zed
        .call(
            Method::POST,
            &format!("/v1/conversations/{conv}/opt-in"),
            None,
        )
        .await
        .unwrap()
        .expect_err("zed is no member");
    assert_eq!(refused.status, 403);
    // The fanout-worker reads push settings from the log too.
    tokio::time::sleep(Duration::from_secs(2)).await;
    // cat and dan are offline; zed is no member; bob is online.
    let p1 = amy
        .send(&conv, "p1", "no one in particular")
        .await
        .unwrap()
        .seq;
    let m = amy
        .send(&conv, "p2", "@dan, @bob and @zed: look (cc me@example.com)")
        .await
        .unwrap()
        .seq;
    all_got_exactly(&[&bob], &conv, &[p1, m]).await;
    let log = kafka().await;
    common::eventually("the push jobs", LONG, || async {
        appended(&*log, &team.stack.topics.push).await >= 3
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        appended(&*log, &team.stack.topics.push).await,
        3,
        "three jobs: cat's (opted in) for both messages, dan's (mentioned) for the second"
    );
    assert_eq!(appended(&*log, &team.stack.topics.inbox).await, 0);
}

/// Second review, finding 13: a group's membership change goes to the gateway slots
/// with someone online, not to every slot. One gateway of four slots has a session; a
/// group of 2,000 is created and 2,000 more are added: only that slot gets the records.
/// A user who then connects on another gateway (a slot no change was routed to) still
/// gets the group's messages live: its groups are loaded from views that hold the log
/// up to where routing to it begins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_changes_go_only_to_slots_with_someone_online() {
    let options = Options {
        fanout_args: vec!["--large-group".into(), "3".into()],
        ..Options::gateways(2)
    };
    let stack = Processes::start_with("membership-slots", options).await;
    let (g0, g1) = (stack.gateways[0].clone(), stack.gateways[1].clone());
    let amy_t = token(&g0, "amy").await;
    let bob_t = token(&g0, "bob").await;
    let amy = live(&g0, &amy_t).await;
    let log = kafka().await;
    let before = log.end_offsets(&stack.topics.deliveries).await.unwrap();
    let first: Vec<String> = (0..2_000).map(|i| format!("m{i:05}")).collect();
    let mut with_bob = first.clone();
    with_bob.push("bob".into());
    let conv = Api::new(&g0, &amy_t)
        .create_group(
            "big",
            &with_bob.iter().map(String::as_str).collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    let more: Vec<String> = (2_000..4_000).map(|i| format!("m{i:05}")).collect();
    add(&Api::new(&g0, &amy_t), &conv, &more).await;
    // A message: routed after both changes, so they are in the slot by then.
    let seq = amy.send(&conv, "hello", "to everyone").await.unwrap().seq;
    amy.wait_for("amy's own copy", LONG, |s| {
        s.messages(&conv).iter().any(|m| m.seq == seq)
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = log.end_offsets(&stack.topics.deliveries).await.unwrap();
    let grew: Vec<i64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    eprintln!("deliveries records per slot: {grew:?}");
    assert!(
        grew[0] >= 2,
        "slot 0 got the changes and the message: {grew:?}"
    );
    for (slot, n) in grew.iter().enumerate().skip(1) {
        assert_eq!(*n, 0, "slot {slot} has nobody online: {grew:?}");
    }
    // Bob connects on gateway 1, whose slot got none of it: live copies reach him.
    let bob = live(&g1, &bob_t).await;
    let next = amy.send(&conv, "again", "bob too").await.unwrap().seq;
    bob.wait_for("bob's live copy", LONG, |s| {
        s.arrivals().iter().any(|m| m.seq == next)
    })
    .await
    .unwrap();
}
