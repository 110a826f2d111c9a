//! Where attachment bytes live: an S3-compatible object store (AWS S3, GCS's S3 API,
//! Ceph RGW, SeaweedFS…) or, for `parley dev`, a directory. Both behind `object_store`'s
//! [`ObjectStore`]; only S3 hands out presigned URLs (the filesystem store's uploads and
//! downloads go through the gateway).
//!
//! Layout: `files/<id>` the bytes, `thumbs/<id>` an image's thumbnail,
//! `uploads/<id>.json` its upload slot ([`super::slots::Slot`]), `claims/<id>.json` the
//! message it was sent with ([`super::slots::Claim`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::signer::{HeaderName, HeaderValue, Method, SignedUrlOptions, Signer, Url};
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

/// What went wrong with the store, for the caller to map to an answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the object store did not answer: {0}")]
    Unavailable(String),
}

impl From<object_store::Error> for StoreError {
    fn from(e: object_store::Error) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

/// An attachment store.
#[derive(Clone)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
    /// The S3 client, when the store is one (it signs URLs).
    s3: Option<Arc<AmazonS3>>,
    /// What it is, for logs and the startup banner.
    describe: String,
}

impl std::fmt::Debug for Blobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe)
    }
}

/// An S3 store's address and credentials.
#[derive(Clone, Debug)]
pub struct S3Settings {
    /// `http(s)://host:port`; `None` for AWS itself.
    pub endpoint: Option<String>,
    pub bucket: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
}

impl Blobs {
    /// An S3-compatible store (path-style addressing, which every S3 server answers).
    pub fn s3(s: &S3Settings) -> anyhow::Result<Blobs> {
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&s.bucket)
            .with_region(&s.region)
            .with_access_key_id(&s.access_key)
            .with_secret_access_key(&s.secret_key)
            .with_virtual_hosted_style_request(false);
        if let Some(e) = &s.endpoint {
            b = b.with_endpoint(e).with_allow_http(e.starts_with("http://"));
        }
        let s3 = Arc::new(b.build()?);
        Ok(Blobs {
            store: s3.clone(),
            s3: Some(s3),
            describe: format!(
                "s3://{} at {}",
                s.bucket,
                s.endpoint.as_deref().unwrap_or("AWS")
            ),
        })
    }

    /// A directory (created if missing).
    pub fn local(dir: &std::path::Path) -> anyhow::Result<Blobs> {
        std::fs::create_dir_all(dir)?;
        let fs = LocalFileSystem::new_with_prefix(dir)?;
        Ok(Blobs {
            store: Arc::new(fs),
            s3: None,
            describe: format!("directory {}", dir.display()),
        })
    }

    /// Whether clients upload to and download from the store itself (presigned URLs).
    pub fn presigns(&self) -> bool {
        self.s3.is_some()
    }

    /// A URL that lets its holder `PUT` an object of `content_type` (a signed header) at
    /// `key` until `expires_in` has passed; `None` for a store without presigned URLs.
    /// Its length cannot be signed this way: it is checked when the file is sent
    /// ([`super::slots::claim`]), and an upload of another length is never sent.
    pub async fn put_url(
        &self,
        key: &str,
        content_type: &str,
        expires_in: Duration,
    ) -> Result<Option<Url>, StoreError> {
        let Some(s3) = &self.s3 else {
            return Ok(None);
        };
        let content_type = HeaderValue::from_str(content_type)
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let options = SignedUrlOptions::default()
            .with_signed_header(HeaderName::from_static("content-type"), content_type);
        let url = s3
            .signed_url_opts(Method::PUT, &Path::from(key), expires_in, &options)
            .await?;
        Ok(Some(url))
    }

    /// A URL that lets its holder `GET` `key` until `expires_in` has passed, answered
    /// with the given `Content-Type` and `Content-Disposition`; `None` for a store
    /// without presigned URLs.
    pub async fn get_url(
        &self,
        key: &str,
        content_type: &str,
        disposition: &str,
        expires_in: Duration,
    ) -> Result<Option<Url>, StoreError> {
        let Some(s3) = &self.s3 else {
            return Ok(None);
        };
        let options = SignedUrlOptions::default().with_query([
            ("response-content-type", content_type),
            ("response-content-disposition", disposition),
        ]);
        let url = s3
            .signed_url_opts(Method::GET, &Path::from(key), expires_in, &options)
            .await?;
        Ok(Some(url))
    }

    /// The length of the object at `key`, if there is one.
    pub async fn size(&self, key: &str) -> Result<Option<u64>, StoreError> {
        match self.store.head(&Path::from(key)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The object at `key`, whole, if there is one.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        match self.store.get(&Path::from(key)).await {
            Ok(r) => Ok(Some(r.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes `bytes` at `key`, replacing what is there.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), StoreError> {
        self.store
            .put(&Path::from(key), PutPayload::from_bytes(bytes))
            .await?;
        Ok(())
    }

    /// Writes `bytes` at `key` unless something is there already: false then.
    pub async fn create(&self, key: &str, bytes: Bytes) -> Result<bool, StoreError> {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .store
            .put_opts(&Path::from(key), PutPayload::from_bytes(bytes), opts)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes `key` (nothing there is no error).
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self.store.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The keys under `prefix`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        use futures::TryStreamExt;
        let metas: Vec<_> = self
            .store
            .list(Some(&Path::from(prefix)))
            .try_collect()
            .await?;
        Ok(metas.into_iter().map(|m| m.location.to_string()).collect())
    }
}
