//! The SDK configuration of a batch command, checked before the first call.
//!
//! Without this check a missing region or missing credentials surface as an opaque
//! "dispatch failure" after the SDK's retries; here they become one sentence naming the
//! variable to set (exit code 4).

use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_sqs::config::ProvideCredentials;

use crate::aws::AwsClients;
use crate::ops::OpsError;

/// Time limit of one AWS call of a batch command, retries included.
pub const API_TIMEOUT: Duration = Duration::from_secs(30);

/// Every client a batch command may use.
#[derive(Debug, Clone)]
pub struct OpsClients {
    /// SQS, ECS, Auto Scaling and CloudWatch, as the controller builds them.
    pub aws: AwsClients,
    /// S3, path-style behind a custom endpoint as the worker addresses it.
    pub s3: aws_sdk_s3::Client,
    /// The region, as S3 events name it.
    pub region: String,
}

impl OpsClients {
    /// Clients from an SDK configuration, with [`API_TIMEOUT`] on every call.
    pub fn new(sdk: &SdkConfig) -> OpsClients {
        let aws = AwsClients::new(sdk, API_TIMEOUT);
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .operation_timeout(API_TIMEOUT)
            .build();
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(sdk)
                .force_path_style(geobatch_common::aws::s3_needs_path_style(sdk))
                .timeout_config(timeouts)
                .build(),
        );
        let region = sdk.region().map(ToString::to_string).unwrap_or_default();
        OpsClients { aws, s3, region }
    }
}

/// Loads the standard AWS configuration and checks it has a region and credentials.
pub async fn load() -> Result<OpsClients, OpsError> {
    let sdk = geobatch_common::aws::load_sdk_config().await;
    check(&sdk).await?;
    Ok(OpsClients::new(&sdk))
}

/// Fails with the variable to set when the region or the credentials are missing.
pub async fn check(sdk: &SdkConfig) -> Result<(), OpsError> {
    if sdk.region().is_none() {
        return Err(OpsError::Credentials(
            "no AWS region: set AWS_REGION (e.g. AWS_REGION=us-east-1) or a region in the \
             AWS_PROFILE's config"
                .to_owned(),
        ));
    }
    let provider = sdk.credentials_provider().ok_or_else(|| {
        OpsError::Credentials("no AWS credentials provider is configured".to_owned())
    })?;
    provider.provide_credentials().await.map_err(|err| {
        OpsError::Credentials(format!(
            "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or \
             AWS_PROFILE, or run where an instance or task role is available ({})",
            aws_sdk_sqs::error::DisplayErrorContext(&err)
        ))
    })?;
    Ok(())
}
