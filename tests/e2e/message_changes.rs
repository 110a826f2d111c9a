//! Edits, deletions for everyone, reactions and replies: each an event on the
//! conversation's partition, seen live by the members online, in history by everyone,
//! and equal in a projector rebuilt from offset 0 (real broker, every role real).

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::stack::InProcess;
use common::user;
use parley_client::{Api, Session};
use parley_projector::store::Stream;
use parley_projector::{Projector, ProjectorConfig, Views};
use parley_schemas::frames::MessageView;
use serde_json::json;

const LONG: Duration = Duration::from_secs(60);

/// Waits until `s` holds the message at `seq` of `conv` and `check` holds of it.
async fn held(s: &Session, conv: &str, seq: i64, what: &str, check: impl Fn(&MessageView) -> bool) {
    s.wait_for(what, LONG, |s| {
        s.messages(conv).iter().any(|m| m.seq == seq && check(m))
    })
    .await
    .unwrap_or_else(|e| panic!("{}: {what}: {e}; holds {:?}", s.user(), s.messages(conv)));
}

fn server_code(e: &parley_client::SessionError) -> String {
    match e {
        parley_client::SessionError::Server { code, .. } => code.clone(),
        other => format!("not a server error: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_deletions_reactions_and_replies_live_in_history_and_after_a_rebuild() {
    let stack = InProcess::start("changes", 1).await;
    let base = &stack.gateways[0];
    let (alice_api, alice) = user(base, "alice").await;
    let (_, bob) = user(base, "bob").await;
    // carol stays offline (REST only); eve is no member.
    let carol = Api::new(base, &Api::dev_token(base, "carol").await.unwrap());
    let eve = Api::new(base, &Api::dev_token(base, "eve").await.unwrap());
    let conv = alice_api
        .create_group("changes", &["bob", "carol"])
        .await
        .unwrap();

    // An edit: the author's only, seen by both sides live.
    let first = alice.send(&conv, "a-1", "helo").await.unwrap().seq;
    held(&bob, &conv, first, "alice's message", |_| true).await;
    let edit = alice.edit(&conv, first, "hello", LONG).await.unwrap();
    assert!(edit > first, "an edit has its own seq after its target");
    for s in [&alice, &bob] {
        held(s, &conv, first, "the edit", |m| {
            m.body == "hello" && m.edited
        })
        .await;
    }
    let e = bob.edit(&conv, first, "mine now", LONG).await.unwrap_err();
    assert_eq!(server_code(&e), "forbidden", "{e}");
    let e = bob
        .edit(&conv, first + 1000, "nothing", LONG)
        .await
        .unwrap_err();
    assert_eq!(server_code(&e), "not_found", "{e}");

    // Reactions: counted once per member and emoji, the reactor's own marked.
    bob.react(&conv, first, "👍", true, LONG).await.unwrap();
    let e = bob.react(&conv, first, "👍", true, LONG).await.unwrap_err();
    assert_eq!(server_code(&e), "conflict", "{e}");
    let e = bob
        .react(&conv, first, "two words", true, LONG)
        .await
        .unwrap_err();
    assert_eq!(server_code(&e), "bad_request", "{e}");
    held(&alice, &conv, first, "bob's reaction", |m| {
        m.reactions.get("👍") == Some(&1) && m.my_reactions.is_empty()
    })
    .await;
    held(&bob, &conv, first, "his own reaction", |m| {
        m.my_reactions == ["👍"]
    })
    .await;

    // A reply, quoting the current text.
    let reply = bob
        .send_reply(&conv, "b-1", "hi alice", Some(first))
        .await
        .unwrap()
        .seq;
    held(&alice, &conv, reply, "bob's reply", |m| {
        m.reply_to.as_ref().is_some_and(|r| r.seq == first)
    })
    .await;

    // A deletion: the creator deletes bob's message; it takes no more changes.
    let doomed = bob.send(&conv, "b-2", "oops").await.unwrap().seq;
    held(&alice, &conv, doomed, "bob's second", |_| true).await;
    alice.delete(&conv, doomed, LONG).await.unwrap();
    for s in [&alice, &bob] {
        held(s, &conv, doomed, "the deletion", |m| {
            m.deleted && m.body.is_empty()
        })
        .await;
    }
    let e = bob.edit(&conv, doomed, "back", LONG).await.unwrap_err();
    assert_eq!(server_code(&e), "gone", "{e}");
    let e = bob.delete(&conv, first, LONG).await.unwrap_err();
    assert_eq!(
        server_code(&e),
        "forbidden",
        "a member deletes no one else's: {e}"
    );

    // Over REST (long-poll clients): carol reacts and takes it back, alice edits again.
    let path = |tail: &str| format!("/v1/conversations/{conv}/messages/{tail}");
    let changed = carol
        .ok(
            reqwest::Method::PUT,
            &path(&format!("{first}/reactions/%F0%9F%8E%89")),
            None,
        )
        .await
        .unwrap();
    assert_eq!(changed["type"], "changed");
    assert_eq!(changed["target_seq"], first);
    carol
        .ok(
            reqwest::Method::DELETE,
            &path(&format!("{first}/reactions/%F0%9F%8E%89")),
            None,
        )
        .await
        .unwrap();
    alice_api
        .ok(
            reqwest::Method::PATCH,
            &path(&first.to_string()),
            Some(json!({"body": "hello!"})),
        )
        .await
        .unwrap();
    let r = eve
        .call(
            reqwest::Method::PATCH,
            &path(&first.to_string()),
            Some(json!({"body": "x"})),
        )
        .await
        .unwrap()
        .expect_err("a non-member edits nothing");
    assert_eq!((r.status.as_u16(), r.code()), (403, "not_member"));
    let r = alice_api
        .call(reqwest::Method::DELETE, &path("not-a-seq"), None)
        .await
        .unwrap()
        .expect_err("a seq is a number");
    assert_eq!(r.status.as_u16(), 400);
    let r = alice_api
        .call(
            reqwest::Method::PATCH,
            &path(&first.to_string()),
            Some(json!({"text": "x"})),
        )
        .await
        .unwrap()
        .expect_err("the body is named body");
    assert_eq!(r.status.as_u16(), 400);
    held(&bob, &conv, first, "the second edit", |m| {
        m.body == "hello!"
    })
    .await;

    // History, for carol who was never online: the current state of every message.
    let page = carol.history(&conv, None, None, 100).await.unwrap();
    let by_seq: BTreeMap<i64, &MessageView> = page.messages.iter().map(|m| (m.seq, m)).collect();
    assert_eq!(
        by_seq.len(),
        3,
        "the changes are no messages: {:?}",
        page.messages
    );
    let m = by_seq[&first];
    assert_eq!((m.body.as_str(), m.edited), ("hello!", true));
    assert_eq!(m.reactions, BTreeMap::from([("👍".to_string(), 1)]));
    assert!(m.my_reactions.is_empty(), "carol took hers back");
    let quoted = by_seq[&reply].reply_to.clone().expect("a reply");
    assert_eq!(
        (
            quoted.seq,
            quoted.sender_id.as_deref(),
            quoted.preview.as_deref()
        ),
        (first, Some("alice"), Some("hello!"))
    );
    assert!(by_seq[&doomed].deleted && by_seq[&doomed].body.is_empty());
    // The live copies agree with history.
    for s in [&alice, &bob] {
        let held: BTreeMap<i64, MessageView> =
            s.messages(&conv).into_iter().map(|m| (m.seq, m)).collect();
        for (seq, h) in &by_seq {
            let l = &held[seq];
            assert_eq!(
                (&l.body, l.edited, l.deleted, &l.reactions),
                (&h.body, h.edited, h.deleted, &h.reactions),
                "{}'s copy of {seq}",
                s.user()
            );
        }
    }

    // A projector rebuilt from offset 0 holds the same views (every stream it reads).
    let dir = tempfile::tempdir().unwrap();
    let rebuilt = Projector::start(
        ProjectorConfig::new(dir.path().join("rebuilt"), &stack.topics),
        stack.log.clone(),
        stack.shutdown.clone(),
    )
    .await
    .expect("a second projector");
    let rebuilt = rebuilt.views();
    for (stream, topic) in [
        (Stream::Events, &stack.topics.events),
        (Stream::Inbox, &stack.topics.inbox),
        (Stream::Receipts, &stack.topics.receipts),
    ] {
        let ends = stack.log.end_offsets(topic).await.unwrap();
        let upto: Vec<(i32, i64)> = ends
            .iter()
            .enumerate()
            .map(|(p, e)| (p as i32, *e))
            .collect();
        for views in [&rebuilt, &stack.views] {
            assert!(views
                .wait_stream_applied(stream, &upto, LONG)
                .await
                .unwrap());
        }
    }
    assert_eq!(
        rebuilt.checksum().await.unwrap(),
        stack.views.checksum().await.unwrap(),
        "a rebuild from offset 0 differs from the live views"
    );
}

/// The final state of each message a client holds: (body, edited, deleted, reactions,
/// own reactions), by seq.
type State = BTreeMap<i64, (String, bool, bool, BTreeMap<String, u64>, Vec<String>)>;

fn state_of(messages: Vec<MessageView>) -> State {
    messages
        .into_iter()
        .map(|m| {
            let mut mine = m.my_reactions;
            mine.sort();
            (m.seq, (m.body, m.edited, m.deleted, m.reactions, mine))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_while_away_reach_the_client_at_its_next_sync_and_poll() {
    let stack = InProcess::start("changes-away", 1).await;
    let base = &stack.gateways[0];
    let (alice_api, alice) = user(base, "alice").await;
    let (_, bob) = user(base, "bob").await;
    let conv = alice_api
        .create_group("away", &["bob", "carol"])
        .await
        .unwrap();
    let mut seqs = Vec::new();
    for i in 0..3 {
        seqs.push(
            alice
                .send(&conv, &format!("a-{i}"), &format!("m{i}"))
                .await
                .unwrap()
                .seq,
        );
    }
    held(&bob, &conv, seqs[2], "alice's three", |_| true).await;
    bob.react(&conv, seqs[1], "👍", true, LONG).await.unwrap();
    held(&bob, &conv, seqs[1], "his reaction", |m| {
        m.my_reactions == ["👍"]
    })
    .await;

    // bob goes away holding his copies; the three are changed meanwhile.
    let kept = bob.into_store();
    alice.edit(&conv, seqs[0], "m0, fixed", LONG).await.unwrap();
    alice.react(&conv, seqs[1], "🎉", true, LONG).await.unwrap();
    alice.react(&conv, seqs[1], "👍", true, LONG).await.unwrap();
    alice.delete(&conv, seqs[2], LONG).await.unwrap();
    let later = alice.send(&conv, "a-3", "m3").await.unwrap().seq;
    alice.react(&conv, later, "👀", true, LONG).await.unwrap();
    alice.send(&conv, "a-4", "@bob, look").await.unwrap();

    let ends = stack.log.end_offsets(&stack.topics.events).await.unwrap();
    let upto: Vec<(i32, i64)> = ends
        .iter()
        .enumerate()
        .map(|(p, e)| (p as i32, *e))
        .collect();
    assert!(stack.views.wait_applied(&upto, LONG).await.unwrap());
    let expected = state_of(
        stack
            .views
            .history(
                &conv,
                parley_projector::views::HistoryQuery {
                    limit: 100,
                    viewer: Some("bob".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .messages,
    );
    assert_eq!(
        expected[&seqs[1]].3.get("👍"),
        Some(&2),
        "bob's and alice's"
    );
    assert!(expected[&seqs[2]].2, "deleted");

    // His conversation list counts what he has not read, and the mention among it.
    let token = Api::dev_token(base, "bob").await.unwrap();
    let listed = Api::new(base, &token).conversations().await.unwrap();
    let row = listed
        .iter()
        .find(|c| c["conversation_id"] == conv.as_str())
        .expect("bob's conversation");
    assert_eq!(
        (row["unread"].as_u64(), row["mentions"].as_u64()),
        (Some(4), Some(1)),
        "m0, m1, m3 and the mention (the deleted m2 is not unread): {row}"
    );

    // A sync from bob's cursors brings the changes to the messages he held, each
    // applied once (his own reaction not counted twice), and what came after.
    let bob = Session::connect(base, &token).await.unwrap();
    assert!(bob.ready(LONG).await.unwrap());
    bob.absorb(kept);
    bob.sync(LONG).await.expect("sync");
    assert_eq!(
        state_of(bob.messages(&conv)),
        expected,
        "bob after his sync"
    );

    // carol, on long-poll from the start, pages through messages and changes.
    let token = Api::dev_token(base, "carol").await.unwrap();
    let mut carol = parley_client::Poller::new(&stack.gateways, &token, "carol");
    carol.limit = Some(2);
    for polls in 0.. {
        assert!(polls < 50, "paging never ended");
        if !carol.poll(Duration::ZERO).await.expect("poll").has_more {
            break;
        }
    }
    let mut carol_state = state_of(carol.store.messages(&conv));
    let mut expected_for_carol = expected.clone();
    for v in expected_for_carol.values_mut() {
        v.4.clear(); // bob's own reactions are not carol's
    }
    for v in carol_state.values_mut() {
        v.4.clear();
    }
    assert_eq!(carol_state, expected_for_carol, "carol after her polls");
}

/// A change a client missed while later events of the conversation still reached it —
/// its own `sent`, a later change — is fetched at once, and never lets its sync cursor
/// pass it. (Here the client misses the changes by being away and coming back without a
/// sync, as a client does whose frame was lost in a reconnect.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_change_is_fetched_when_a_later_event_names_it() {
    let stack = InProcess::start("missed-change", 1).await;
    let base = &stack.gateways[0];
    let (alice_api, alice) = user(base, "alice").await;
    let (_, bob) = user(base, "bob").await;
    let conv = alice_api.create_direct("bob").await.unwrap();
    let first = alice.send(&conv, "a-1", "one").await.unwrap().seq;
    held(&bob, &conv, first, "alice's first message", |_| true).await;
    let token = Api::dev_token(base, "bob").await.unwrap();
    let reconnect = |kept| {
        let token = token.clone();
        async move {
            let s = Session::connect(base, &token).await.unwrap();
            assert!(s.ready(LONG).await.unwrap());
            s.absorb(kept);
            s
        }
    };

    // Away: alice reacts. Back, without a sync: bob's own send names her reaction as
    // the change before it, though its message chain is whole.
    let kept = bob.into_store();
    let reaction = alice.react(&conv, first, "👍", true, LONG).await.unwrap();
    let bob = reconnect(kept).await;
    let own = bob.send(&conv, "b-1", "two").await.unwrap().seq;
    held(&bob, &conv, first, "the reaction he was away for", |m| {
        m.reactions.get("👍") == Some(&1) && m.changed_seq == Some(reaction)
    })
    .await;
    bob.wait_for("his cursor at his own message", LONG, |s| {
        s.cursors().get(&conv) == Some(&own)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: cursors {:?}", bob.cursors()));

    // Away again: an edit and a reaction to his message. Back, without a sync: alice's
    // next reaction comes live and names the one before it; bob applies all three, in
    // order.
    let kept = bob.into_store();
    alice.edit(&conv, first, "one, edited", LONG).await.unwrap();
    alice.react(&conv, own, "🎉", true, LONG).await.unwrap();
    let bob = reconnect(kept).await;
    // (A frame routed to the new session before it took in the old store may already
    // have started a fill: the cursor is then none until the fill ends.)
    assert!(
        bob.cursors().get(&conv).is_none_or(|c| *c <= own),
        "nothing past what he held: {:?}",
        bob.cursors()
    );
    let last = alice.react(&conv, own, "👀", true, LONG).await.unwrap();
    held(&bob, &conv, first, "the edit he was away for", |m| {
        m.edited && m.body == "one, edited"
    })
    .await;
    held(&bob, &conv, own, "both reactions to his message", |m| {
        m.reactions.get("🎉") == Some(&1) && m.reactions.get("👀") == Some(&1)
    })
    .await;
    let history = alice_api.history(&conv, None, None, 100).await.unwrap();
    let mut now = history.messages;
    let mut his = bob.messages(&conv);
    for m in now.iter_mut().chain(his.iter_mut()) {
        m.my_reactions.clear();
        m.prev_change = None;
    }
    let state = |l: &[MessageView]| -> Vec<_> {
        l.iter()
            .map(|m| (m.seq, m.body.clone(), m.edited, m.reactions.clone()))
            .collect()
    };
    assert_eq!(state(&his), state(&now), "bob's copy equals history");
    assert!(bob.cursors()[&conv] >= own && last > own);
}
