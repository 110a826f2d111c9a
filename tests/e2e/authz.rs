//! Authorization, endpoint by endpoint and frame by frame, against the real broker: a
//! user outside a conversation cannot read, post, sync, receive, see typing, receipts
//! or presence, or add anyone; in a group the creator and its admins remove others, and
//! roles live in the log; in a direct conversation no one is removed, a member leaves
//! and comes back by creating it again; and a member added to a group sees history from
//! the add on, unless the group opens its full history.

use crate::common;

use std::time::Duration;

use common::stack::InProcess;
use common::{eventually, live, token, LONG};
use parley_client::Api;
use reqwest::Method;
use serde_json::{json, Value};

/// A refusal's (status, code).
async fn refused(api: &Api, method: Method, path: &str, body: Option<Value>) -> (u16, String) {
    match api.call(method.clone(), path, body).await.unwrap() {
        Ok(v) => panic!("{method} {path} was allowed: {v}"),
        Err(r) => (r.status.as_u16(), r.code().to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_outsider_can_do_nothing_with_a_conversation() {
    let stack = InProcess::start("authz-outsider", 1).await;
    let g = &stack.gateways[0];
    let (amy_t, bob_t, eve_t) = (
        token(g, "amy").await,
        token(g, "bob").await,
        token(g, "eve").await,
    );
    let (amy_api, eve_api) = (Api::new(g, &amy_t), Api::new(g, &eve_t));
    let group = amy_api.create_group("team", &["bob"]).await.unwrap();
    let direct = amy_api.create_direct("bob").await.unwrap();
    let (amy, bob, eve) = (
        live(g, &amy_t).await,
        live(g, &bob_t).await,
        live(g, &eve_t).await,
    );
    let first = amy.send(&group, "m1", "members only").await.unwrap().seq;
    amy.send(&direct, "d1", "just us").await.unwrap();
    bob.wait_messages(&group, 1, LONG).await.unwrap();

    for conv in [&group, &direct] {
        let c = conv.as_str();
        let cases: Vec<(Method, String, Option<Value>)> = vec![
            (Method::GET, format!("/v1/conversations/{c}/messages"), None),
            (
                Method::POST,
                format!("/v1/conversations/{c}/messages"),
                Some(json!({"client_msg_id": "e1", "body": "let me in"})),
            ),
            (
                Method::POST,
                format!("/v1/conversations/{c}/members"),
                Some(json!({"members": ["eve"]})),
            ),
            (
                Method::DELETE,
                format!("/v1/conversations/{c}/members/bob"),
                None,
            ),
            (Method::GET, format!("/v1/conversations/{c}/receipts"), None),
            (
                Method::POST,
                format!("/v1/conversations/{c}/receipts"),
                Some(json!({"kind": "read", "seq": first})),
            ),
            (Method::POST, format!("/v1/conversations/{c}/mute"), None),
            (Method::POST, format!("/v1/conversations/{c}/opt-in"), None),
            (Method::GET, format!("/v1/conversations/{c}"), None),
            (
                Method::PATCH,
                format!("/v1/conversations/{c}"),
                Some(json!({"full_history": true})),
            ),
            (
                Method::PUT,
                format!("/v1/conversations/{c}/admins/eve"),
                None,
            ),
            (
                Method::DELETE,
                format!("/v1/conversations/{c}/admins/bob"),
                None,
            ),
        ];
        for (method, path, body) in cases {
            let (status, code) = refused(&eve_api, method.clone(), &path, body).await;
            assert_eq!(
                (status, code.as_str()),
                (403, "not_member"),
                "{method} {path}"
            );
        }
    }
    // Her lists hold none of it.
    assert!(eve_api.conversations().await.unwrap().is_empty());
    assert!(eve_api.inbox().await.unwrap().is_empty());
    let presence = eve_api
        .ok(Method::GET, "/v1/presence?user_ids=amy,bob", None)
        .await
        .unwrap();
    for u in presence["users"].as_array().unwrap() {
        assert_eq!(u["status"], "unknown", "{presence}");
    }
    let poll = eve_api
        .ok(Method::GET, "/v1/events?timeout_ms=500", None)
        .await
        .unwrap();
    let frames = poll["frames"].as_array().cloned().unwrap_or_default();
    assert!(
        frames
            .iter()
            .all(|f| f["conversation_id"] != group.as_str()
                && f["conversation_id"] != direct.as_str()),
        "{poll}"
    );

    // Frames: every one about the conversations is refused.
    let frames = [
        json!({"type": "send", "client_msg_id": "e2", "conversation_id": group, "body": "hi"}),
        json!({"type": "history", "conversation_id": group, "request_id": "h"}),
        json!({"type": "ack", "conversation_id": group, "seq": first}),
        json!({"type": "read", "conversation_id": group, "seq": first}),
        json!({"type": "typing", "conversation_id": group, "active": true}),
        json!({"type": "history", "conversation_id": direct, "request_id": "hd"}),
        json!({"type": "typing", "conversation_id": direct, "active": true}),
    ];
    for f in &frames {
        eve.send_json(f.clone()).await.unwrap();
    }
    eventually("every frame refused", LONG, || async {
        eve.errors()
            .iter()
            .filter(|e| e["code"] == "not_member")
            .count()
            >= frames.len()
    })
    .await;
    let answer = eve.query_presence(&["amy", "bob"], LONG).await.unwrap();
    assert!(
        answer
            .iter()
            .all(|u| u.status == parley_schemas::frames::PresenceStatus::Unknown),
        "{answer:?}"
    );
    eve.sync(LONG).await.unwrap();

    // Meanwhile the members talk, type and read: none of it reaches her.
    bob.typing(&group, true).await.unwrap();
    let last = bob
        .send(&group, "m2", "still members only")
        .await
        .unwrap()
        .seq;
    bob.ack(&group, last, LONG).await.unwrap();
    amy.wait_messages(&group, 2, LONG).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(eve.arrivals().is_empty(), "{:?}", eve.arrivals());
    assert!(eve.messages(&group).is_empty() && eve.messages(&direct).is_empty());
    assert!(eve.typing_seen().is_empty(), "{:?}", eve.typing_seen());
    assert!(eve.receipts().is_empty(), "{:?}", eve.receipts());
    assert!(
        eve.presence_seen()
            .iter()
            .all(|(u, _, _)| u != "amy" && u != "bob"),
        "{:?}",
        eve.presence_seen()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn removal_is_the_creators_and_a_direct_conversation_is_left_not_emptied() {
    let stack = InProcess::start("authz-roles", 1).await;
    let g = &stack.gateways[0];
    let (amy_t, bob_t) = (token(g, "amy").await, token(g, "bob").await);
    let (amy, bob) = (Api::new(g, &amy_t), Api::new(g, &bob_t));
    let group = amy.create_group("team", &["bob", "cat"]).await.unwrap();

    // A member who did not create the group removes no one but themselves.
    let (status, code) = refused(
        &bob,
        Method::DELETE,
        &format!("/v1/conversations/{group}/members/cat"),
        None,
    )
    .await;
    assert_eq!((status, code.as_str()), (403, "forbidden"));
    // The creator does.
    amy.ok(
        Method::DELETE,
        &format!("/v1/conversations/{group}/members/cat"),
        None,
    )
    .await
    .unwrap();

    // Direct: nobody removes the other; each may leave, and creating it again brings
    // them back.
    let direct = amy.create_direct("bob").await.unwrap();
    let (status, code) = refused(
        &amy,
        Method::DELETE,
        &format!("/v1/conversations/{direct}/members/bob"),
        None,
    )
    .await;
    assert_eq!((status, code.as_str()), (403, "forbidden"));
    bob.ok(
        Method::DELETE,
        &format!("/v1/conversations/{direct}/members/bob"),
        None,
    )
    .await
    .unwrap();
    let post = |api: &Api, id: &str| {
        let (api, path) = (api.clone(), format!("/v1/conversations/{direct}/messages"));
        let body = json!({"client_msg_id": id, "body": "hello"});
        async move { api.call(Method::POST, &path, Some(body)).await.unwrap() }
    };
    let gone = post(&bob, "b-gone").await.expect_err("bob left");
    assert_eq!(gone.code(), "not_member");
    let again = bob
        .ok(
            Method::POST,
            "/v1/conversations",
            Some(json!({"type": "direct", "members": ["amy"]})),
        )
        .await
        .unwrap();
    assert_eq!(again["conversation_id"], direct.as_str());
    assert_eq!(again["rejoined"], true, "{again}");
    eventually("bob back in", LONG, || async {
        post(&bob, "b-back").await.is_ok()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_added_later_sees_history_from_the_add_on() {
    let stack = InProcess::start("authz-history", 1).await;
    let g = &stack.gateways[0];
    let (amy_t, cat_t) = (token(g, "amy").await, token(g, "cat").await);
    let amy_api = Api::new(g, &amy_t);
    let group = amy_api.create_group("team", &["bob"]).await.unwrap();
    let amy = live(g, &amy_t).await;
    amy.send(&group, "before-1", "said before cat")
        .await
        .unwrap();
    amy.send(&group, "before-2", "also before").await.unwrap();
    amy_api
        .add_members(&group, &["cat".to_string()])
        .await
        .unwrap();
    let after = amy.send(&group, "after", "cat is here").await.unwrap().seq;

    let cat_api = Api::new(g, &cat_t);
    // A history page without an upper bound reads the views as they are: wait until
    // they hold the last message, then look at everything cat is shown.
    eventually("the views hold the last message", LONG, || async {
        amy_api
            .all_messages(&group)
            .await
            .unwrap()
            .iter()
            .any(|m| m.seq == after)
    })
    .await;
    let seen: Vec<i64> = cat_api
        .all_messages(&group)
        .await
        .unwrap()
        .iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!(seen, vec![after], "history from the add on");
    let earlier = cat_api
        .ok(
            Method::GET,
            &format!("/v1/conversations/{group}/messages?after=-1&before={after}"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(earlier["messages"], json!([]), "{earlier}");
    // Long-poll from the beginning: the same.
    let poll = cat_api
        .ok(Method::GET, "/v1/events?timeout_ms=1000", None)
        .await
        .unwrap();
    let polled: Vec<i64> = poll["frames"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["type"] == "message" && f["conversation_id"] == group.as_str())
        .map(|f| f["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(polled, vec![after], "long-poll from the add on: {poll}");
    let cat = live(g, &cat_t).await;
    cat.sync(LONG).await.unwrap();
    let synced: Vec<i64> = cat.messages(&group).iter().map(|m| m.seq).collect();
    assert_eq!(synced, vec![after], "sync from the add on");
    // The creator still sees everything.
    assert_eq!(amy_api.all_messages(&group).await.unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admins_are_made_in_the_log_and_remove_members_below_them() {
    let stack = InProcess::start("authz-admins", 1).await;
    let g = &stack.gateways[0];
    let mut api = std::collections::HashMap::new();
    for u in ["amy", "bob", "cat", "dan", "eli"] {
        api.insert(u, Api::new(g, &token(g, u).await));
    }
    let group = api["amy"]
        .create_group("team", &["bob", "cat", "dan", "eli"])
        .await
        .unwrap();
    let path = |what: &str, user: &str| format!("/v1/conversations/{group}/{what}/{user}");
    let forbidden = |who: &'static str, method: Method, p: String| {
        let api = api[who].clone();
        async move {
            let (status, code) = refused(&api, method.clone(), &p, None).await;
            assert_eq!(
                (status, code.as_str()),
                (403, "forbidden"),
                "{who}: {method} {p}"
            );
        }
    };
    let ok = |who: &'static str, method: Method, p: String| {
        let api = api[who].clone();
        async move {
            api.ok(method.clone(), &p, None)
                .await
                .unwrap_or_else(|e| panic!("{who}: {method} {p}: {e:?}"));
        }
    };
    let admins = || {
        let api = api["eli"].clone();
        let p = format!("/v1/conversations/{group}");
        async move { api.ok(Method::GET, &p, None).await.unwrap()["admins"].clone() }
    };

    // A member makes no admins and removes no one.
    forbidden("bob", Method::PUT, path("admins", "bob")).await;
    forbidden("bob", Method::DELETE, path("members", "cat")).await;
    // The creator makes bob an admin: the views show it, and bob removes a member.
    ok("amy", Method::PUT, path("admins", "bob")).await;
    assert_eq!(admins().await, json!(["bob"]));
    let cat_live = live(g, api["cat"].token()).await;
    let dan_live = live(g, api["dan"].token()).await;
    ok("bob", Method::DELETE, path("members", "cat")).await;
    // The fanout-worker applied the same rules: cat receives nothing more.
    let amy_live = live(g, api["amy"].token()).await;
    amy_live
        .send(&group, "after-cat", "cat is out")
        .await
        .unwrap();
    dan_live.wait_messages(&group, 1, LONG).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        cat_live.messages(&group).is_empty(),
        "{:?}",
        cat_live.messages(&group)
    );
    let (status, code) = refused(
        &api["cat"],
        Method::GET,
        &format!("/v1/conversations/{group}/messages"),
        None,
    )
    .await;
    assert_eq!((status, code.as_str()), (403, "not_member"));

    // An admin removes no creator and no admin, and ends no other admin's role.
    forbidden("bob", Method::DELETE, path("members", "amy")).await;
    ok("bob", Method::PUT, path("admins", "dan")).await;
    forbidden("bob", Method::DELETE, path("members", "dan")).await;
    forbidden("bob", Method::DELETE, path("admins", "dan")).await;
    forbidden("bob", Method::DELETE, path("admins", "amy")).await;
    // An admin steps down; the creator ends anyone's role.
    ok("dan", Method::DELETE, path("admins", "dan")).await;
    ok("amy", Method::DELETE, path("admins", "bob")).await;
    assert_eq!(admins().await, json!([]));
    forbidden("bob", Method::DELETE, path("members", "dan")).await;

    // A removed admin is an admin no longer when added again.
    ok("amy", Method::PUT, path("admins", "eli")).await;
    ok("amy", Method::DELETE, path("members", "eli")).await;
    api["amy"]
        .add_members(&group, &["eli".to_string()])
        .await
        .unwrap();
    // Once the views have both records: a member again, an admin no longer.
    eventually("eli back, not an admin", LONG, || async {
        let view = api["amy"]
            .ok(Method::GET, &format!("/v1/conversations/{group}"), None)
            .await
            .unwrap();
        let members = view["members"].as_array().unwrap();
        members.contains(&json!("eli")) && view["admins"] == json!([])
    })
    .await;
    forbidden("eli", Method::DELETE, path("members", "dan")).await;

    // A direct conversation has no roles.
    let direct = api["amy"].create_direct("bob").await.unwrap();
    let (status, code) = refused(
        &api["amy"],
        Method::PUT,
        &format!("/v1/conversations/{direct}/admins/bob"),
        None,
    )
    .await;
    assert_eq!((status, code.as_str()), (403, "forbidden"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_group_can_open_its_full_history_to_members_added_later() {
    let stack = InProcess::start("authz-full-history", 1).await;
    let g = &stack.gateways[0];
    let (amy_t, bob_t, cat_t) = (
        token(g, "amy").await,
        token(g, "bob").await,
        token(g, "cat").await,
    );
    let (amy_api, bob_api, cat_api) = (
        Api::new(g, &amy_t),
        Api::new(g, &bob_t),
        Api::new(g, &cat_t),
    );
    let group = amy_api.create_group("open", &["bob"]).await.unwrap();
    let amy = live(g, &amy_t).await;
    let first = amy.send(&group, "b1", "before cat").await.unwrap().seq;
    amy.send(&group, "b2", "also before").await.unwrap();
    let settings = format!("/v1/conversations/{group}");

    // Only the creator and admins change settings, and only with a valid body.
    let (status, code) = refused(
        &bob_api,
        Method::PATCH,
        &settings,
        Some(json!({"full_history": true})),
    )
    .await;
    assert_eq!((status, code.as_str()), (403, "forbidden"));
    let (status, code) = refused(
        &amy_api,
        Method::PATCH,
        &settings,
        Some(json!({"full_history": "yes"})),
    )
    .await;
    assert_eq!((status, code.as_str()), (400, "bad_request"));
    let set = amy_api
        .ok(
            Method::PATCH,
            &settings,
            Some(json!({"full_history": true})),
        )
        .await
        .unwrap();
    assert_eq!(set["full_history"], true, "{set}");

    amy_api
        .add_members(&group, &["cat".to_string()])
        .await
        .unwrap();
    let after = amy.send(&group, "a1", "cat is here").await.unwrap().seq;
    let seen: Vec<i64> = cat_api
        .all_messages(&group)
        .await
        .unwrap()
        .iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!(seen.len(), 3, "the whole history: {seen:?}");
    assert_eq!((seen[0], seen[2]), (first, after));
    let cat = live(g, &cat_t).await;
    cat.sync(LONG).await.unwrap();
    assert_eq!(cat.messages(&group).len(), 3, "sync: the whole history");
    let view = cat_api.ok(Method::GET, &settings, None).await.unwrap();
    assert_eq!(view["full_history"], true, "{view}");

    // Closed again: a member added later reads from their add on.
    amy_api
        .ok(
            Method::PATCH,
            &settings,
            Some(json!({"full_history": false})),
        )
        .await
        .unwrap();
    let seen: Vec<i64> = cat_api
        .all_messages(&group)
        .await
        .unwrap()
        .iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!(seen, vec![after], "from the add on again");
}

/// A role change the views have not applied within 10 s is not answered as done: the
/// answer is 503 `unavailable` (the change is in the log), not 204. Here the projector
/// applies each batch 12 s late.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_change_the_views_have_not_applied_is_not_answered_as_done() {
    let options = common::stack::Options {
        projector_args: vec!["--debug-apply-delay-ms".into(), "12000".into()],
        ..common::stack::Options::gateways(1)
    };
    let stack = common::stack::Processes::start_with("roles-unconfirmed", options).await;
    let g = &stack.gateways[0];
    let amy = Api::new(g, &token(g, "amy").await);
    let group = amy.create_group("team", &["bob"]).await.unwrap();
    let path = format!("/v1/conversations/{group}");
    eventually("the views hold the group", LONG, || async {
        amy.call(Method::GET, &path, None).await.unwrap().is_ok()
    })
    .await;
    let answer = amy
        .call(Method::PUT, &format!("{path}/admins/bob"), None)
        .await
        .unwrap();
    let refused = answer.expect_err("answered as done before the views had it");
    assert_eq!(
        (refused.status.as_u16(), refused.code()),
        (503, "unavailable")
    );
    // It was in the log: it takes.
    eventually("bob is an admin", LONG, || async {
        amy.ok(Method::GET, &path, None)
            .await
            .is_ok_and(|v| v["admins"] == json!(["bob"]))
    })
    .await;
}
