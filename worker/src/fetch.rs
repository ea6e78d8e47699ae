//! Downloading a source object to a temporary file with bounded memory.
//!
//! The body is streamed chunk by chunk to disk, so memory does not grow with the object; the
//! size limit is enforced on the size in the response headers and again on the bytes
//! actually received, so a wrong or missing `Content-Length` cannot smuggle in a huge object.

use std::path::Path;
use std::time::Duration;

use tempfile::TempPath;
use tokio::io::AsyncWriteExt;

use crate::event::ObjectRef;
use crate::objects::{GetRequest, ObjectStore};
use crate::sdk_error::{GetErrorKind, error_chain};

/// A downloaded object; the file is removed when this is dropped.
#[derive(Debug)]
pub struct Download {
    /// The temporary file holding the object's bytes.
    pub path: TempPath,
    /// Bytes received.
    pub size_bytes: u64,
    /// ETag of the bytes received, without quotes.
    pub etag: Option<String>,
    /// Version received, on a versioned bucket.
    pub version_id: Option<String>,
}

/// Why an object could not be downloaded.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Permanent: S3 said what is wrong with the source (missing, archived, KMS key
    /// unusable, replaced since the event).
    #[error("s3://{bucket}/{key}: {message}")]
    Refused {
        /// What S3's answer means.
        kind: GetErrorKind,
        /// Source bucket.
        bucket: String,
        /// Source key.
        key: String,
        /// What S3 said.
        message: String,
    },
    /// The object is larger than `--max-object-bytes`.
    #[error("s3://{bucket}/{key} is larger than the {limit}-byte limit ({seen})")]
    TooLarge {
        /// Source bucket.
        bucket: String,
        /// Source key.
        key: String,
        /// The configured limit.
        limit: u64,
        /// What was seen: the announced size, or "more than N bytes received".
        seen: String,
    },
    /// Anything that may succeed on another try: throttling, 5xx, network, local disk.
    #[error("downloading s3://{bucket}/{key} failed: {message}")]
    Transient {
        /// Source bucket.
        bucket: String,
        /// Source key.
        key: String,
        /// What went wrong.
        message: String,
    },
}

/// The bounds of one download.
#[derive(Debug, Clone, Copy)]
pub struct FetchLimits {
    /// Largest object accepted.
    pub max_object_bytes: u64,
    /// Longest wait for S3's answer, and for each chunk of the body after it.
    pub call_timeout: Duration,
}

/// Downloads `object` (the version or ETag its event names) into a new temporary file in
/// `work_dir`.
pub async fn download(
    store: &impl ObjectStore,
    object: &ObjectRef,
    limits: FetchLimits,
    work_dir: &Path,
) -> Result<Download, FetchError> {
    let max_object_bytes = limits.max_object_bytes;
    let transient = |message: String| FetchError::Transient {
        bucket: object.bucket.clone(),
        key: object.key.clone(),
        message,
    };
    let too_large = |seen: String| FetchError::TooLarge {
        bucket: object.bucket.clone(),
        key: object.key.clone(),
        limit: max_object_bytes,
        seen,
    };
    let request = GetRequest {
        bucket: &object.bucket,
        key: &object.key,
        version_id: object.version_id.as_deref(),
        if_match: object.etag.as_deref(),
    };
    let response = match tokio::time::timeout(limits.call_timeout, store.get(request)).await {
        Err(_elapsed) => {
            return Err(transient(format!(
                "GetObject did not answer within {:.1} s",
                limits.call_timeout.as_secs_f64()
            )));
        }
        Ok(Err(err)) if err.kind == GetErrorKind::Transient => return Err(transient(err.message)),
        Ok(Err(err)) => {
            return Err(FetchError::Refused {
                kind: err.kind,
                bucket: object.bucket.clone(),
                key: object.key.clone(),
                message: err.message,
            });
        }
        Ok(Ok(response)) => response,
    };
    let announced = response.content_length;
    if let Some(size) = announced.filter(|&size| size > max_object_bytes) {
        return Err(too_large(format!("{size} bytes announced")));
    }
    let file = tempfile::Builder::new()
        .prefix("geobatch-")
        .suffix(".download")
        .tempfile_in(work_dir)
        .map_err(|err| {
            transient(format!(
                "cannot create a file in {}: {err}",
                work_dir.display()
            ))
        })?;
    let (std_file, path) = file.into_parts();
    let mut out = tokio::io::BufWriter::new(tokio::fs::File::from_std(std_file));
    let mut body = response.body;
    let mut size_bytes: u64 = 0;
    loop {
        let chunk = match tokio::time::timeout(limits.call_timeout, body.try_next()).await {
            Err(_elapsed) => {
                return Err(transient(format!(
                    "the body stalled for {:.1} s after {size_bytes} bytes",
                    limits.call_timeout.as_secs_f64()
                )));
            }
            Ok(Err(err)) => {
                return Err(transient(format!(
                    "reading the body: {}",
                    error_chain(&err)
                )));
            }
            Ok(Ok(None)) => break,
            Ok(Ok(Some(chunk))) => chunk,
        };
        size_bytes += chunk.len() as u64;
        if size_bytes > max_object_bytes {
            return Err(too_large(format!(
                "more than {max_object_bytes} bytes received"
            )));
        }
        out.write_all(&chunk)
            .await
            .map_err(|err| transient(format!("writing {}: {err}", path.display())))?;
    }
    out.flush()
        .await
        .map_err(|err| transient(format!("writing {}: {err}", path.display())))?;
    if let Some(expected) = announced.filter(|&expected| expected != size_bytes) {
        return Err(transient(format!(
            "body ended after {size_bytes} of {expected} bytes"
        )));
    }
    Ok(Download {
        path,
        size_bytes,
        etag: response.etag,
        version_id: response.version_id,
    })
}

/// An ETag without the quotes S3 puts around it.
pub fn unquote(etag: &str) -> String {
    etag.trim_matches('"').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_lose_their_quotes_only() {
        assert_eq!(unquote("\"abc-2\""), "abc-2");
        assert_eq!(unquote("abc"), "abc");
    }
}
