//! Downloading a source object to a temporary file with bounded memory.
//!
//! The body is streamed chunk by chunk to disk, so memory does not grow with the object; the
//! size limit is enforced on the size in the response headers and again on the bytes
//! actually received, so a wrong or missing `Content-Length` cannot smuggle in a huge object.
//!
//! Disk is bounded the same way: before the request, the download reserves the size the event
//! gives (or `--max-object-bytes` when it gives none) from the task's [`ScratchBudget`], and
//! never writes more than it reserved. Any failure (a full disk included) drops the partial
//! file, which deletes it, and then its reservation, before the error is returned.

use std::path::Path;
use std::time::Duration;

use tempfile::TempPath;
use tokio::io::AsyncWriteExt;

use crate::event::ObjectRef;
use crate::objects::{GetRequest, GetResponse, ObjectStore};
use crate::scratch::{Reservation, ScratchBudget};
use crate::sdk_error::{GetErrorKind, error_chain};

/// A downloaded object; the file is removed when this is dropped, and then its space is
/// returned to the scratch budget.
#[derive(Debug)]
pub struct Download {
    /// The temporary file holding the object's bytes, with its scratch space.
    pub path: ScratchPath,
    /// Bytes received.
    pub size_bytes: u64,
    /// ETag of the bytes received, without quotes.
    pub etag: Option<String>,
    /// Version received, on a versioned bucket.
    pub version_id: Option<String>,
}

/// A downloaded file and the share of the scratch budget it holds, as one value: whatever
/// keeps the path keeps the space counted. (An `async move` block that uses only
/// `input.file.path` captures only that field, so a reservation beside the path would be
/// released while a command still reads the file.)
#[derive(Debug)]
pub struct ScratchPath {
    /// Dropped first (fields drop in order): the file is gone before its space is handed on.
    path: TempPath,
    reservation: Reservation,
}

impl ScratchPath {
    /// `path`, holding `reservation` for as long as it exists.
    pub fn new(path: TempPath, reservation: Reservation) -> ScratchPath {
        ScratchPath { path, reservation }
    }

    /// Bytes of the scratch budget this file holds.
    pub fn reserved_bytes(&self) -> u64 {
        self.reservation.bytes()
    }
}

impl std::ops::Deref for ScratchPath {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for ScratchPath {
    fn as_ref(&self) -> &Path {
        &self.path
    }
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
/// `work_dir`, once `scratch` has room for it.
pub async fn download(
    store: &impl ObjectStore,
    object: &ObjectRef,
    limits: FetchLimits,
    work_dir: &Path,
    scratch: &ScratchBudget,
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
    let source = format!("s3://{}/{}", object.bucket, object.key);
    let mut wanted = object.size.unwrap_or(max_object_bytes);
    let mut asked_again = false;
    let (mut reservation, response) = loop {
        // Reserved before the request, so no response is held open while waiting for room.
        let mut reservation = scratch.reserve(wanted, &source).await;
        let response = get(store, object, limits.call_timeout).await?;
        match response.content_length {
            Some(size) if size > max_object_bytes => {
                return Err(too_large(format!("{size} bytes announced")));
            }
            // The event said less than S3 does (a hand-made event, say): take the difference
            // if it is free now, else let go of everything, wait for the whole size, and ask
            // again, once.
            Some(size) if !scratch.try_grow(&mut reservation, size) => {
                if asked_again {
                    return Err(transient(format!(
                        "S3 announced {size} bytes, more than the {wanted} reserved for it"
                    )));
                }
                asked_again = true;
                wanted = size;
            }
            Some(size) => {
                scratch.shrink(&mut reservation, size);
                break (reservation, response);
            }
            None => break (reservation, response),
        }
    };
    let announced = response.content_length;
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
        // Never past the space held: a wrong size must not fill the disk under neighbours.
        if size_bytes > reservation.bytes() && !scratch.try_grow(&mut reservation, size_bytes) {
            return Err(transient(format!(
                "more than the {} bytes reserved received, and no scratch space is free",
                reservation.bytes()
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
        path: ScratchPath::new(path, reservation),
        size_bytes,
        etag: response.etag,
        version_id: response.version_id,
    })
}

/// Asks S3 for the object (the version or ETag its event names), within `call_timeout`.
async fn get(
    store: &impl ObjectStore,
    object: &ObjectRef,
    call_timeout: Duration,
) -> Result<GetResponse, FetchError> {
    let transient = |message: String| FetchError::Transient {
        bucket: object.bucket.clone(),
        key: object.key.clone(),
        message,
    };
    let request = GetRequest {
        bucket: &object.bucket,
        key: &object.key,
        version_id: object.version_id.as_deref(),
        if_match: object.etag.as_deref(),
    };
    match tokio::time::timeout(call_timeout, store.get(request)).await {
        Err(_elapsed) => Err(transient(format!(
            "GetObject did not answer within {:.1} s",
            call_timeout.as_secs_f64()
        ))),
        Ok(Err(err)) if err.kind == GetErrorKind::Transient => Err(transient(err.message)),
        Ok(Err(err)) => Err(FetchError::Refused {
            kind: err.kind,
            bucket: object.bucket.clone(),
            key: object.key.clone(),
            message: err.message,
        }),
        Ok(Ok(response)) => Ok(response),
    }
}

/// An ETag without the quotes S3 puts around it.
pub fn unquote(etag: &str) -> String {
    etag.trim_matches('"').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::GetError;
    use aws_sdk_s3::primitives::ByteStream;
    use prometheus_client::metrics::gauge::Gauge;

    /// A store whose only object may announce a size other than its body's.
    #[derive(Debug, Clone)]
    struct OneObject {
        body: Vec<u8>,
        announced: Option<u64>,
    }

    impl ObjectStore for OneObject {
        async fn get(&self, _request: GetRequest<'_>) -> Result<GetResponse, GetError> {
            Ok(GetResponse {
                content_length: self.announced,
                etag: None,
                version_id: None,
                body: ByteStream::from(self.body.clone()),
            })
        }

        async fn put(&self, _bucket: &str, _key: &str, _body: Vec<u8>) -> Result<(), String> {
            Err("read-only".to_owned())
        }
    }

    fn object(size: Option<u64>) -> ObjectRef {
        ObjectRef {
            bucket: "in".into(),
            key: "k".into(),
            size,
            etag: None,
            version_id: None,
        }
    }

    const LIMITS: FetchLimits = FetchLimits {
        max_object_bytes: 1 << 20,
        call_timeout: Duration::from_secs(5),
    };

    fn files_in(dir: &Path) -> usize {
        std::fs::read_dir(dir).expect("work dir").count()
    }

    #[tokio::test]
    async fn a_download_holds_its_size_until_dropped_and_shrinks_to_the_announced_size() {
        let dir = tempfile::tempdir().expect("work dir");
        let scratch = ScratchBudget::new(1 << 20, Gauge::default()).expect("budget");
        let store = OneObject {
            body: vec![b'x'; 3000],
            announced: Some(3000),
        };
        // No size in the event: the largest object is reserved, then what S3 announced.
        let download = download(&store, &object(None), LIMITS, dir.path(), &scratch)
            .await
            .expect("downloaded");
        assert_eq!(download.size_bytes, 3000);
        assert_eq!(scratch.reserved_bytes(), 3000);
        assert_eq!(files_in(dir.path()), 1);
        drop(download);
        assert_eq!((scratch.reserved_bytes(), files_in(dir.path())), (0, 0));
    }

    #[tokio::test]
    async fn a_failed_write_deletes_the_partial_file_and_frees_its_space_at_once() {
        let dir = tempfile::tempdir().expect("work dir");
        let scratch = ScratchBudget::new(4096, Gauge::default()).expect("budget");
        let neighbour = scratch.reserve(3072, "s3://in/other").await;
        // The body runs past the space its event's size reserved and none is free: the file
        // must not grow beyond it, as a write must not grow past a full disk.
        let store = OneObject {
            body: vec![b'x'; 5000],
            announced: None,
        };
        let failed = download(&store, &object(Some(1000)), LIMITS, dir.path(), &scratch).await;
        assert!(
            matches!(&failed, Err(FetchError::Transient { message, .. }) if message.contains("1000 bytes")),
            "{failed:?}"
        );
        assert_eq!((scratch.reserved_bytes(), files_in(dir.path())), (3072, 0));
        drop(neighbour);
        // S3 says more than the event did: the difference is taken while it is free; when it
        // is not, everything is let go and the whole size waited for before asking again.
        let larger = OneObject {
            body: vec![b'x'; 3000],
            announced: Some(3000),
        };
        let grown = download(&larger, &object(Some(1000)), LIMITS, dir.path(), &scratch).await;
        assert_eq!(grown.map(|d| d.path.reserved_bytes()).ok(), Some(3000));
        let neighbour = scratch.reserve(2048, "s3://in/other").await;
        let waiting = tokio::spawn({
            let (scratch, path) = (scratch.clone(), dir.path().to_owned());
            async move { download(&larger, &object(Some(1000)), LIMITS, &path, &scratch).await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !waiting.is_finished(),
            "3000 bytes do not fit beside 2048 in 4096"
        );
        assert_eq!(
            scratch.reserved_bytes(),
            2048,
            "the first reservation was let go"
        );
        drop(neighbour);
        let download = waiting.await.expect("no panic").expect("downloaded");
        assert_eq!(download.path.reserved_bytes(), 3000);
        drop(download);
        assert_eq!((scratch.reserved_bytes(), files_in(dir.path())), (0, 0));
    }

    #[test]
    fn etags_lose_their_quotes_only() {
        assert_eq!(unquote("\"abc-2\""), "abc-2");
        assert_eq!(unquote("abc"), "abc");
    }
}
