//! The S3 calls the worker makes, behind one small trait.
//!
//! [`ObjectStore`] is what downloading ([`crate::fetch`]) and writing outcomes
//! ([`crate::results`]) are written against: [`S3Store`] is the real one; the unit tests use
//! an in-memory store. A failed read comes back already classified ([`GetErrorKind`], from
//! what S3 answered: see [`crate::sdk_error::classify_get`]), because the class decides the
//! message's fate.

use std::future::Future;

use aws_sdk_s3::primitives::ByteStream;

use crate::sdk_error::{GetErrorKind, classify_get, error_chain};

/// Which object (and which version of it) to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetRequest<'a> {
    /// Source bucket.
    pub bucket: &'a str,
    /// Source key.
    pub key: &'a str,
    /// The version the event names, on a versioned bucket.
    pub version_id: Option<&'a str>,
    /// Read only if the object still has this ETag (the event's), when no version is named.
    pub if_match: Option<&'a str>,
}

/// An object being read.
#[derive(Debug)]
pub struct GetResponse {
    /// Size S3 announced.
    pub content_length: Option<u64>,
    /// ETag, without quotes.
    pub etag: Option<String>,
    /// Version read, on a versioned bucket.
    pub version_id: Option<String>,
    /// The bytes, streamed.
    pub body: ByteStream,
}

/// A failed read, classified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct GetError {
    /// What the failure means for the source.
    pub kind: GetErrorKind,
    /// What S3 said.
    pub message: String,
}

/// The object operations of a worker. Errors are the call's own explanation.
pub trait ObjectStore: Clone + Send + Sync + 'static {
    /// Starts reading an object.
    fn get(
        &self,
        request: GetRequest<'_>,
    ) -> impl Future<Output = Result<GetResponse, GetError>> + Send;

    /// Writes an object (JSON).
    fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

/// S3 itself.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
}

impl S3Store {
    /// A store reaching S3 through `client`.
    pub fn new(client: aws_sdk_s3::Client) -> S3Store {
        S3Store { client }
    }
}

impl ObjectStore for S3Store {
    async fn get(&self, request: GetRequest<'_>) -> Result<GetResponse, GetError> {
        let mut call = self
            .client
            .get_object()
            .bucket(request.bucket)
            .key(request.key);
        if let Some(version_id) = request.version_id {
            call = call.version_id(version_id);
        } else if let Some(etag) = request.if_match {
            call = call.if_match(format!("\"{}\"", etag.trim_matches('"')));
        }
        let response = call.send().await.map_err(|err| {
            let code = err
                .as_service_error()
                .and_then(aws_sdk_s3::error::ProvideErrorMetadata::code)
                .map(str::to_owned);
            let status = err.raw_response().map(|raw| raw.status().as_u16());
            let message = error_chain(&err);
            GetError {
                kind: classify_get(status, code.as_deref(), &message),
                message,
            }
        })?;
        Ok(GetResponse {
            content_length: response
                .content_length()
                .and_then(|n| u64::try_from(n).ok()),
            etag: response
                .e_tag()
                .map(|etag| etag.trim_matches('"').to_owned()),
            version_id: response.version_id().map(str::to_owned),
            body: response.body,
        })
    }

    async fn put(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<(), String> {
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type("application/json")
            .body(ByteStream::from(body))
            .send()
            .await
            .map(drop)
            .map_err(|err| error_chain(&err))
    }
}
