//! AWS SDK configuration from the standard chain.
//!
//! Nothing here invents its own settings: the endpoint comes from `AWS_ENDPOINT_URL` (and the
//! per-service `AWS_ENDPOINT_URL_<SERVICE>` variables), the region and credentials from the
//! usual environment, profile and instance-role providers. That keeps the local emulator and
//! production on one code path.

use aws_config::{BehaviorVersion, SdkConfig};

/// Loads the shared SDK configuration the way every AWS tool does.
pub async fn load_sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}

/// Whether S3 must be addressed path-style (`http://host/bucket/key`).
///
/// Emulators and S3-compatible stores behind a custom endpoint rarely resolve
/// `bucket.host` names, while real S3 wants virtual-hosted names; a custom endpoint is the
/// signal that tells the two apart.
pub fn s3_needs_path_style(config: &SdkConfig) -> bool {
    config.endpoint_url().is_some()
        || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some_and(|v| !v.is_empty())
}
