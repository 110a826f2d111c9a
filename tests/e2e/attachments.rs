//! Attachments, end to end: upload, send, download; every refusal; a removed member and
//! a stranger refused; URLs that expire. The same suite runs against real processes on
//! the real broker with the real S3 server (`scripts/s3.sh`: SeaweedFS), and against
//! `parley dev` on its embedded log with its filesystem store.

use crate::common;

use std::time::Duration;

use common::stack::{dev_embedded, free_port, wait_ready, Options, Proc, Processes};
use common::{eventually, live, token, LONG};
use parley_client::{Api, Session};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// The S3 store `scripts/s3.sh start` runs (override with `PARLEY_TEST_S3_*`).
pub(crate) fn s3_env() -> Vec<(String, String)> {
    let var = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
    vec![
        (
            "PARLEY_ATTACHMENTS".into(),
            format!(
                "s3://{}",
                var("PARLEY_TEST_S3_BUCKET", "parley-attachments")
            ),
        ),
        (
            "PARLEY_S3_ENDPOINT".into(),
            var("PARLEY_TEST_S3_ENDPOINT", "http://127.0.0.1:8333"),
        ),
        (
            "PARLEY_S3_ACCESS_KEY".into(),
            var("PARLEY_TEST_S3_ACCESS_KEY", "parley"),
        ),
        (
            "PARLEY_S3_SECRET_KEY".into(),
            var("PARLEY_TEST_S3_SECRET_KEY", "parley-secret-key"),
        ),
    ]
}

/// Limits the suite checks against.
fn limits() -> Vec<(String, String)> {
    vec![
        (
            "PARLEY_MAX_ATTACHMENT_BYTES".into(),
            (1024 * 1024).to_string(),
        ),
        ("PARLEY_DOWNLOAD_EXPIRY_S".into(), "2".into()),
        ("PARLEY_RATE_UPLOADS".into(), "0".into()),
    ]
}

/// A PNG of `w`×`h` pixels.
fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 90]));
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

fn pdf() -> Vec<u8> {
    let mut b = b"%PDF-1.4\n% a file that is not an image\n".to_vec();
    b.extend((0..5000u32).map(|i| (i % 251) as u8));
    b
}

/// What the suite needs of a stack: a gateway, and whether uploads go to the store
/// directly (presigned URLs) or through the gateway.
struct Target {
    base: String,
    presigned: bool,
}

async fn slot(
    api: &Api,
    conversation: &str,
    content_type: &str,
    size: usize,
) -> Result<Value, parley_client::Refused> {
    api.call(
        Method::POST,
        "/v1/uploads",
        Some(json!({"conversation_id": conversation, "content_type": content_type, "size": size})),
    )
    .await
    .unwrap()
}

/// The error code of a send that was refused.
async fn refused_send(
    s: &Session,
    conv: &str,
    cmid: &str,
    files: Vec<parley_schemas::AttachmentRef>,
) -> String {
    match s.send_files(conv, cmid, "with files", files).await {
        Err(parley_client::SessionError::Server { code, .. }) => code,
        other => panic!("the send was not refused: {other:?}"),
    }
}

async fn suite(t: &Target) {
    let base = &t.base;
    let (alice_t, bob_t, carol_t, dave_t) = (
        token(base, "alice").await,
        token(base, "bob").await,
        token(base, "carol").await,
        token(base, "dave").await,
    );
    let (alice, bob, carol, dave) = (
        Api::new(base, &alice_t),
        Api::new(base, &bob_t),
        Api::new(base, &carol_t),
        Api::new(base, &dave_t),
    );
    let group = alice
        .create_group("files", &["bob", "carol"])
        .await
        .unwrap();
    let (a, b) = (live(base, &alice_t).await, live(base, &bob_t).await);

    // Upload, send, download: a PNG and a PDF.
    let image = png(800, 400);
    let doc = pdf();
    let photo = alice
        .upload(&group, "photo.png", "image/png", image.clone())
        .await
        .unwrap();
    let file = alice
        .upload(&group, "plan v2.pdf", "application/pdf", doc.clone())
        .await
        .unwrap();
    let sent = a
        .send_files(&group, "f1", "two files", vec![photo.clone(), file.clone()])
        .await
        .expect("sent with files");
    b.wait_messages(&group, 1, LONG).await.unwrap();
    let got = b.messages(&group);
    let live_copy = got.iter().find(|m| m.seq == sent.seq).expect("bob's copy");
    assert_eq!(live_copy.attachments.len(), 2, "{live_copy:?}");
    assert_eq!(live_copy.attachments[0].name, "photo.png");
    assert_eq!(live_copy.attachments[0].content_type, "image/png");
    assert_eq!(live_copy.attachments[0].size, image.len() as i64);
    assert_eq!(live_copy.attachments[1].name, "plan v2.pdf");
    // History holds the same references.
    let page = bob.history(&group, None, None, 50).await.unwrap();
    let kept = page.messages.iter().find(|m| m.seq == sent.seq).unwrap();
    assert_eq!(kept.attachments, live_copy.attachments);

    let got_image = bob
        .download(&photo.attachment_id, false)
        .await
        .unwrap()
        .expect("the image");
    assert_eq!(got_image.bytes, image, "the image's bytes");
    assert_eq!(got_image.content_type, "image/png");
    assert!(
        got_image.disposition.starts_with("inline"),
        "{}",
        got_image.disposition
    );
    let got_doc = carol
        .download(&file.attachment_id, false)
        .await
        .unwrap()
        .expect("the pdf");
    assert_eq!(got_doc.bytes, doc, "the pdf's bytes");
    assert!(
        got_doc.disposition.starts_with("attachment;")
            && got_doc.disposition.contains("plan%20v2.pdf"),
        "{}",
        got_doc.disposition
    );
    // The thumbnail: a PNG at most 320 px on its longer side.
    let thumb = bob
        .download(&photo.attachment_id, true)
        .await
        .unwrap()
        .expect("a thumbnail");
    let small = image::load_from_memory(&thumb.bytes).expect("a PNG");
    assert_eq!((small.width(), small.height()), (320, 160));
    let no_thumb = bob
        .download(&file.attachment_id, true)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(no_thumb.status, StatusCode::NOT_FOUND);

    // Refusals at the slot: size, type, not a member.
    let big = slot(&alice, &group, "image/png", 2 * 1024 * 1024)
        .await
        .unwrap_err();
    assert_eq!(
        (big.status, big.code()),
        (StatusCode::PAYLOAD_TOO_LARGE, "too_large")
    );
    let html = slot(&alice, &group, "text/html", 10).await.unwrap_err();
    assert_eq!(
        (html.status, html.code()),
        (StatusCode::BAD_REQUEST, "bad_request")
    );
    let svg = slot(&alice, &group, "image/svg+xml", 10).await.unwrap_err();
    assert_eq!(svg.status, StatusCode::BAD_REQUEST);
    let empty = slot(&alice, &group, "image/png", 0).await.unwrap_err();
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
    let stranger = slot(&dave, &group, "image/png", 10).await.unwrap_err();
    assert_eq!(stranger.status, StatusCode::FORBIDDEN);

    // Refusals at the send: a foreign id, an id used again, one never uploaded.
    let bob_file = bob
        .upload(&group, "bob.txt", "text/plain", b"bob's".to_vec())
        .await
        .unwrap();
    assert_eq!(
        refused_send(&a, &group, "f2", vec![bob_file.clone()]).await,
        "not_found"
    );
    assert_eq!(
        refused_send(&a, &group, "f3", vec![photo.clone()]).await,
        "conflict"
    );
    let mut made_up = photo.clone();
    made_up.attachment_id = uuid::Uuid::new_v4().to_string();
    assert_eq!(
        refused_send(&a, &group, "f4", vec![made_up]).await,
        "not_found"
    );
    let never = alice
        .call(
            Method::POST,
            "/v1/uploads",
            Some(json!({"conversation_id": group, "content_type": "text/plain", "size": 5})),
        )
        .await
        .unwrap()
        .unwrap();
    let mut unsent = bob_file.clone();
    unsent.attachment_id = never["attachment_id"].as_str().unwrap().to_string();
    assert_eq!(
        refused_send(&a, &group, "f5", vec![unsent]).await,
        "bad_request"
    );
    // A refused send claimed nothing: bob still sends his own file.
    let bs = live(base, &bob_t).await;
    bs.send_files(&group, "b1", "mine", vec![bob_file.clone()])
        .await
        .expect("bob sends his file");
    // The same message sent again (a retry) keeps its claim.
    let again = a
        .send_files(&group, "f1", "two files", vec![photo.clone(), file.clone()])
        .await
        .expect("a retry");
    assert_eq!(again.seq, sent.seq);

    // A stranger, an unknown id and a removed member all get the same 403.
    let no = dave
        .download(&photo.attachment_id, false)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!((no.status, no.code()), (StatusCode::FORBIDDEN, "forbidden"));
    let unknown = bob
        .download(&uuid::Uuid::new_v4().to_string(), false)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!((unknown.status, &unknown.body), (no.status, &no.body));
    let junk = bob.download("not-an-id", false).await.unwrap().unwrap_err();
    assert_eq!((junk.status, &junk.body), (no.status, &no.body));
    alice
        .ok(
            Method::DELETE,
            &format!("/v1/conversations/{group}/members/carol"),
            None,
        )
        .await
        .unwrap();
    eventually("carol refused once removed", LONG, || async {
        carol
            .download(&file.attachment_id, false)
            .await
            .unwrap()
            .is_err_and(|r| r.status == StatusCode::FORBIDDEN && r.body == no.body)
    })
    .await;

    // URLs that expire.
    if t.presigned {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let redirect = http
            .get(format!("{base}/v1/attachments/{}", file.attachment_id))
            .bearer_auth(&bob_t)
            .send()
            .await
            .unwrap();
        assert_eq!(redirect.status(), StatusCode::FOUND);
        let location = redirect.headers()["location"].to_str().unwrap().to_string();
        let fresh = reqwest::get(&location).await.unwrap();
        assert_eq!(fresh.status(), StatusCode::OK);
        assert_eq!(fresh.bytes().await.unwrap().to_vec(), doc);
        // Download URLs work for 2 s here.
        tokio::time::sleep(Duration::from_secs(4)).await;
        let stale = reqwest::get(&location).await.unwrap();
        assert_eq!(
            stale.status(),
            StatusCode::FORBIDDEN,
            "an expired download URL"
        );
    }
    // A deleted message's files are no longer served.
    alice
        .ok(
            Method::DELETE,
            &format!("/v1/conversations/{group}/messages/{}", sent.seq),
            None,
        )
        .await
        .unwrap();
    eventually("the deleted message's file refused", LONG, || async {
        bob.download(&photo.attachment_id, false)
            .await
            .unwrap()
            .is_err_and(|r| r.status == StatusCode::FORBIDDEN)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn attachments_on_the_s3_store_and_the_broker() {
    let mut options = Options::gateways(1);
    options.env.extend(s3_env());
    options.env.extend(limits());
    let stack = Processes::start_with("attachments", options).await;
    suite(&Target {
        base: stack.gateways[0].clone(),
        presigned: true,
    })
    .await;
}

/// `parley dev` on its embedded log, with attachments in its data directory.
fn dev(dir: &std::path::Path, port: u16, env: &[(String, String)]) -> Proc {
    let env: Vec<(String, String)> = limits().into_iter().chain(env.iter().cloned()).collect();
    dev_embedded(dir, port, "dev", &env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn attachments_on_the_filesystem_store_of_parley_dev() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().port();
    let base = format!("http://127.0.0.1:{port}");
    let _dev = dev(dir.path(), port, &[]);
    wait_ready(&base).await;
    suite(&Target {
        base: base.clone(),
        presigned: false,
    })
    .await;
    assert!(
        dir.path().join("parley-data/attachments/files").is_dir(),
        "the files are in the data directory"
    );
    // Through the gateway: the slot's owner only, the announced type and size, once.
    let (amy_t, ben_t) = (token(&base, "amy").await, token(&base, "ben").await);
    let (amy, ben) = (Api::new(&base, &amy_t), Api::new(&base, &ben_t));
    let conv = amy.create_direct("ben").await.unwrap();
    let s = slot(&amy, &conv, "text/plain", 5).await.unwrap();
    let url = format!("{base}{}", s["upload_url"].as_str().unwrap());
    let put = |token: &str, ct: &str, body: &'static [u8]| {
        reqwest::Client::new()
            .put(url.clone())
            .bearer_auth(token.to_string())
            .header("content-type", ct)
            .body(body)
            .send()
    };
    assert_eq!(
        put(&ben_t, "text/plain", b"hello").await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        put(&amy_t, "image/png", b"hello").await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        put(&amy_t, "text/plain", b"hello!").await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        put(&amy_t, "text/plain", b"hello").await.unwrap().status(),
        StatusCode::CREATED
    );
    assert_eq!(
        put(&amy_t, "text/plain", b"hello").await.unwrap().status(),
        StatusCode::CONFLICT
    );
    let _ = ben;
}

/// A user's daily quota of files, and the sweeper: an upload never sent is removed once
/// its time has passed, and the file of a deleted message at the next sweep.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_daily_quota_holds_and_the_sweeper_removes_what_no_message_holds() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().port();
    let base = format!("http://127.0.0.1:{port}");
    let env = [
        ("PARLEY_UPLOAD_QUOTA_FILES".to_string(), "3".to_string()),
        ("PARLEY_ATTACHMENT_SWEEP_S".into(), "1".into()),
        ("PARLEY_UNSENT_UPLOAD_TTL_S".into(), "6".into()),
    ];
    let _dev = dev(dir.path(), port, &env);
    wait_ready(&base).await;
    let (amy_t, _ben_t) = (token(&base, "amy").await, token(&base, "ben").await);
    let amy = Api::new(&base, &amy_t);
    let conv = amy.create_direct("ben").await.unwrap();
    let sent_file = amy
        .upload(&conv, "kept.txt", "text/plain", b"kept".to_vec())
        .await
        .unwrap();
    let unsent = amy
        .upload(&conv, "never.txt", "text/plain", b"never".to_vec())
        .await
        .unwrap();
    let s = live(&base, &amy_t).await;
    let sent = s
        .send_files(&conv, "q1", "", vec![sent_file.clone()])
        .await
        .expect("a message of a file alone");
    let third = slot(&amy, &conv, "text/plain", 3)
        .await
        .expect("the third slot of the day");
    let over = slot(&amy, &conv, "text/plain", 3).await.unwrap_err();
    assert_eq!(
        (over.status, over.code()),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
    );
    assert!(
        over.body["error"]["retry_after_ms"].as_u64().unwrap() > 0,
        "{}",
        over.body
    );
    let files = dir.path().join("parley-data/attachments/files");
    let has = |id: &str| files.join(id).exists();
    assert!(has(&sent_file.attachment_id) && has(&unsent.attachment_id));
    // The message's file stays while it is there; the one never sent goes.
    eventually("the upload never sent removed", LONG, || async {
        !has(&unsent.attachment_id)
    })
    .await;
    assert!(has(&sent_file.attachment_id), "a sent file was swept");
    let _ = third;
    amy.ok(
        Method::DELETE,
        &format!("/v1/conversations/{conv}/messages/{}", sent.seq),
        None,
    )
    .await
    .unwrap();
    eventually("the deleted message's file removed", LONG, || async {
        !has(&sent_file.attachment_id)
    })
    .await;
}
