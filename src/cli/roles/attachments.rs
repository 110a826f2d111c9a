//! Where a gateway keeps attachments, and their limits: an S3-compatible store
//! (`--attachments s3://BUCKET` with `PARLEY_S3_*`), a directory (`file:///DIR`), or none.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use parley_gateway::attachments::{AttachmentLimits, Blobs, S3Settings};
use parley_gateway::GatewayConfig;

#[derive(Debug, Clone, Args)]
pub struct AttachmentArgs {
    /// Where attachments are stored: `s3://BUCKET` (an S3-compatible store: AWS S3,
    /// SeaweedFS, Ceph RGW…, addressed by PARLEY_S3_ENDPOINT and its keys), `file:///DIR`,
    /// or `none`. Default: none for `parley gateway`; `parley dev` keeps them in
    /// `attachments/` beside its views.
    #[arg(long, env = "PARLEY_ATTACHMENTS")]
    pub(super) attachments: Option<String>,
    /// The S3 store's address (`http(s)://host:port`); unset for AWS itself.
    #[arg(long, env = "PARLEY_S3_ENDPOINT")]
    pub(super) s3_endpoint: Option<String>,
    #[arg(long, env = "PARLEY_S3_REGION", default_value = "us-east-1")]
    pub(super) s3_region: String,
    #[arg(long, env = "PARLEY_S3_ACCESS_KEY", hide_env_values = true)]
    pub(super) s3_access_key: Option<String>,
    #[arg(long, env = "PARLEY_S3_SECRET_KEY", hide_env_values = true)]
    pub(super) s3_secret_key: Option<String>,
    /// Largest attachment, in bytes.
    #[arg(long, env = "PARLEY_MAX_ATTACHMENT_BYTES", default_value_t = AttachmentLimits::default().max_bytes)]
    pub(super) max_attachment_bytes: u64,
    /// Media types accepted, comma-separated (default: common images, PDF, plain text,
    /// zip, audio and video; never HTML or SVG).
    #[arg(long, env = "PARLEY_ATTACHMENT_TYPES", value_delimiter = ',')]
    pub(super) attachment_types: Vec<String>,
    /// Seconds an upload URL works.
    #[arg(long, env = "PARLEY_UPLOAD_EXPIRY_S", default_value_t = 900)]
    pub(super) upload_expiry_s: u64,
    /// Seconds a download URL works.
    #[arg(long, env = "PARLEY_DOWNLOAD_EXPIRY_S", default_value_t = 300)]
    pub(super) download_expiry_s: u64,
    /// Seconds after which an upload never sent is removed.
    #[arg(long, env = "PARLEY_UNSENT_UPLOAD_TTL_S", default_value_t = 86_400)]
    pub(super) unsent_upload_ttl_s: u64,
    /// Files a user may upload per UTC day (0: no limit).
    #[arg(long, env = "PARLEY_UPLOAD_QUOTA_FILES", default_value_t = parley_gateway::attachments::quota::Quota::default().count)]
    pub(super) upload_quota_files: u64,
    /// Bytes a user may upload per UTC day (0: no limit).
    #[arg(long, env = "PARLEY_UPLOAD_QUOTA_BYTES", default_value_t = parley_gateway::attachments::quota::Quota::default().bytes)]
    pub(super) upload_quota_bytes: u64,
    /// Seconds between sweeps of the store (by gateway 0).
    #[arg(long, env = "PARLEY_ATTACHMENT_SWEEP_S", default_value_t = 3600)]
    pub(super) attachment_sweep_s: u64,
}

impl AttachmentArgs {
    /// Sets `config`'s attachment store and limits. `dev_dir`: where `parley dev` keeps
    /// them when no store is named.
    pub(super) fn apply(
        &self,
        config: &mut GatewayConfig,
        dev_dir: Option<&Path>,
    ) -> anyhow::Result<()> {
        config.attachments = match (self.attachments.as_deref(), dev_dir) {
            (Some("none"), _) | (None, None) => None,
            (None, Some(dir)) => Some(Blobs::local(dir)?),
            (Some(url), _) => Some(self.store(url)?),
        };
        let mut limits = AttachmentLimits {
            max_bytes: self.max_attachment_bytes.max(1),
            upload_expiry: Duration::from_secs(self.upload_expiry_s.max(1)),
            download_expiry: Duration::from_secs(self.download_expiry_s.max(1)),
            unsent_ttl: Duration::from_secs(self.unsent_upload_ttl_s),
            quota: parley_gateway::attachments::quota::Quota {
                count: self.upload_quota_files,
                bytes: self.upload_quota_bytes,
            },
            ..AttachmentLimits::default()
        };
        if !self.attachment_types.is_empty() {
            limits.types = self
                .attachment_types
                .iter()
                .map(|t| parley_gateway::attachments::media_type(t))
                .filter(|t| !t.is_empty())
                .collect();
        }
        config.attachment_limits = limits;
        config.attachment_sweep = Duration::from_secs(self.attachment_sweep_s.max(1));
        Ok(())
    }

    fn store(&self, url: &str) -> anyhow::Result<Blobs> {
        if let Some(dir) = url.strip_prefix("file://") {
            anyhow::ensure!(
                dir.starts_with('/'),
                "--attachments {url}: a file:// store needs an absolute path (file:///DIR)"
            );
            return Blobs::local(&PathBuf::from(dir));
        }
        let Some(bucket) = url.strip_prefix("s3://") else {
            anyhow::bail!("--attachments {url:?}: expected s3://BUCKET, file:///DIR or none");
        };
        let bucket = bucket.trim_end_matches('/');
        anyhow::ensure!(
            !bucket.is_empty() && !bucket.contains('/'),
            "--attachments {url:?}: s3://BUCKET names a bucket, nothing more"
        );
        let (Some(access_key), Some(secret_key)) = (&self.s3_access_key, &self.s3_secret_key)
        else {
            anyhow::bail!(
                "--attachments {url}: set PARLEY_S3_ACCESS_KEY and PARLEY_S3_SECRET_KEY \
                 (scripts/s3.sh env prints the local store's)"
            );
        };
        Blobs::s3(&S3Settings {
            endpoint: self.s3_endpoint.clone(),
            bucket: bucket.to_string(),
            region: self.s3_region.clone(),
            access_key: access_key.clone(),
            secret_key: secret_key.clone(),
        })
    }
}
