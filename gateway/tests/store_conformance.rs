//! The attachment store's contract, run against both stores: a directory
//! (`LocalFileSystem`) and the real S3 server `scripts/s3.sh start` runs (SeaweedFS;
//! `PARLEY_TEST_S3_*` to point elsewhere). Presigned URLs are tried with a plain HTTP
//! client, as a browser would use them.

use std::time::Duration;

use bytes::Bytes;
use parley_gateway::attachments::{Blobs, S3Settings};
use uuid::Uuid;

fn s3() -> Blobs {
    let var = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
    Blobs::s3(&S3Settings {
        endpoint: Some(var("PARLEY_TEST_S3_ENDPOINT", "http://127.0.0.1:8333")),
        bucket: var("PARLEY_TEST_S3_BUCKET", "parley-attachments"),
        region: "us-east-1".into(),
        access_key: var("PARLEY_TEST_S3_ACCESS_KEY", "parley"),
        secret_key: var("PARLEY_TEST_S3_SECRET_KEY", "parley-secret-key"),
    })
    .expect("an S3 client")
}

/// What every store does, under a prefix of this run.
async fn contract(blobs: &Blobs) {
    let run = format!("conformance-{}", Uuid::new_v4().simple());
    let key = |k: &str| format!("{run}/{k}");
    // Absent things are absent, not errors.
    assert_eq!(blobs.size(&key("none")).await.unwrap(), None);
    assert_eq!(blobs.get(&key("none")).await.unwrap(), None);
    blobs.delete(&key("none")).await.expect("deleting nothing");
    // Put, size, get, replace.
    blobs
        .put(&key("a"), Bytes::from_static(b"hello"))
        .await
        .unwrap();
    assert_eq!(blobs.size(&key("a")).await.unwrap(), Some(5));
    assert_eq!(
        blobs.get(&key("a")).await.unwrap().unwrap(),
        Bytes::from_static(b"hello")
    );
    blobs
        .put(&key("a"), Bytes::from_static(b"hi"))
        .await
        .unwrap();
    assert_eq!(
        blobs.get(&key("a")).await.unwrap().unwrap(),
        Bytes::from_static(b"hi")
    );
    // Create only if absent: the second one loses and changes nothing.
    assert!(blobs
        .create(&key("c"), Bytes::from_static(b"first"))
        .await
        .unwrap());
    assert!(!blobs
        .create(&key("c"), Bytes::from_static(b"second"))
        .await
        .unwrap());
    assert_eq!(
        blobs.get(&key("c")).await.unwrap().unwrap(),
        Bytes::from_static(b"first")
    );
    // Racing creates: exactly one wins.
    let racers = (0..8).map(|i| {
        let blobs = blobs.clone();
        let k = key("race");
        async move {
            blobs
                .create(&k, Bytes::from(format!("r{i}")))
                .await
                .unwrap()
        }
    });
    let won = futures::future::join_all(racers).await;
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
    // Listing a prefix, then deleting.
    let mut listed = blobs.list(&run).await.unwrap();
    listed.sort();
    assert_eq!(listed, vec![key("a"), key("c"), key("race")]);
    for k in listed {
        blobs.delete(&k).await.unwrap();
    }
    assert!(blobs.list(&run).await.unwrap().is_empty());
}

#[tokio::test]
async fn the_filesystem_store_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = Blobs::local(dir.path()).unwrap();
    contract(&blobs).await;
    assert!(!blobs.presigns());
    let url = blobs
        .put_url("x", "image/png", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(url, None);
}

#[tokio::test]
async fn the_s3_store_keeps_the_contract_and_its_urls_work_and_expire() {
    let blobs = s3();
    contract(&blobs).await;
    assert!(blobs.presigns());
    let key = format!("conformance-{}/presigned", Uuid::new_v4().simple());
    let http = reqwest::Client::new();
    // A presigned PUT binds the content type.
    let put = blobs
        .put_url(&key, "text/plain", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    let wrong = http
        .put(put.clone())
        .header("content-type", "text/html")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403, "a PUT with another content type");
    let ok = http
        .put(put)
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert!(ok.status().is_success(), "{}", ok.status());
    assert_eq!(blobs.size(&key).await.unwrap(), Some(5));
    // A presigned GET answers with the headers it was signed with, until it expires.
    let get = blobs
        .get_url(
            &key,
            "text/plain",
            "attachment; filename=\"a.txt\"",
            Duration::from_secs(1),
        )
        .await
        .unwrap()
        .unwrap();
    let r = http.get(get.clone()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-disposition"],
        "attachment; filename=\"a.txt\""
    );
    assert_eq!(r.bytes().await.unwrap(), Bytes::from_static(b"hello"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        http.get(get).send().await.unwrap().status(),
        403,
        "an expired URL"
    );
    blobs.delete(&key).await.unwrap();
}
