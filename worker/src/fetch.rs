//! Downloading a source object to a temporary file with bounded memory.
//!
//! The body is streamed chunk by chunk to disk, so memory does not grow with the object; the
//! size limit is enforced on the size in the response headers and again on the bytes
//! actually received, so a wrong or missing `Content-Length` cannot smuggle in a huge object.

use std::path::Path;

use tempfile::TempPath;
use tokio::io::AsyncWriteExt;

use crate::event::ObjectRef;
use crate::sdk_error::{error_chain, is_not_found_status, status_of};

/// A downloaded object; the file is removed when this is dropped.
#[derive(Debug)]
pub struct Download {
    /// The temporary file holding the object's bytes.
    pub path: TempPath,
    /// Bytes received.
    pub size_bytes: u64,
    /// ETag of the bytes received, without quotes.
    pub etag: Option<String>,
}

/// Why an object could not be downloaded.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The object (or its bucket) does not exist, e.g. it was deleted before it was read.
    #[error("s3://{bucket}/{key} does not exist: {message}")]
    Missing {
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

/// Downloads `object` into a new temporary file in `work_dir`.
pub async fn download(
    s3: &aws_sdk_s3::Client,
    object: &ObjectRef,
    max_object_bytes: u64,
    work_dir: &Path,
) -> Result<Download, FetchError> {
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
    let response = s3
        .get_object()
        .bucket(&object.bucket)
        .key(&object.key)
        .send()
        .await
        .map_err(|err| {
            let not_found = err
                .as_service_error()
                .is_some_and(|service| service.is_no_such_key())
                || is_not_found_status(status_of(&err));
            if not_found {
                FetchError::Missing {
                    bucket: object.bucket.clone(),
                    key: object.key.clone(),
                    message: error_chain(&err),
                }
            } else {
                transient(error_chain(&err))
            }
        })?;
    let announced = response
        .content_length()
        .and_then(|n| u64::try_from(n).ok());
    if let Some(size) = announced.filter(|&size| size > max_object_bytes) {
        return Err(too_large(format!("{size} bytes announced")));
    }
    let etag = response.e_tag().map(unquote);
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
    while let Some(chunk) = body
        .try_next()
        .await
        .map_err(|err| transient(format!("reading the body: {}", error_chain(&err))))?
    {
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
        etag,
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
