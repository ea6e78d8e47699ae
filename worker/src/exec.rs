//! Running an external command on a downloaded file (`--exec`), the classic `process_file`.
//!
//! The command runs through `sh -c` with the file path appended as its last argument and the
//! source as `GEOBATCH_SOURCE_BUCKET`/`GEOBATCH_SOURCE_KEY`. It gets its own process group,
//! so a timeout or a shutdown kills everything it started, not only the shell. Its standard
//! output (bounded) is the result; its standard error is kept (the tail, bounded) for the
//! error report.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use crate::event::ObjectRef;
use crate::kind::ErrorKind;
use crate::results::ErrorDetail;

/// Largest standard output accepted as a result.
pub const MAX_STDOUT_BYTES: usize = 64 * 1024 * 1024;
/// How much of the end of standard error an error report keeps.
pub const STDERR_TAIL_BYTES: usize = 64 * 1024;

/// Why a command produced no result.
#[derive(Debug)]
pub enum ExecFailure {
    /// The command ran and failed (non-zero exit, timeout, too much output): report it.
    Permanent(ErrorDetail),
    /// The command could not be started; another try (or another worker) may succeed.
    Transient(String),
}

/// Kills a command's whole process group when dropped, so neither a timeout nor an abandoned
/// message (shutdown) leaves its processes running.
struct ProcessGroupGuard(Option<i32>);

impl Drop for ProcessGroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            // SAFETY: kill(2) with a negative pid signals the process group we created for
            // this command; it touches no memory of ours.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

/// Runs `command` on `path` and returns its standard output as the result.
pub async fn run(
    command: &str,
    path: &Path,
    timeout: Duration,
    object: &ObjectRef,
) -> Result<Value, ExecFailure> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("{command} \"$1\""))
        .arg("geobatch-exec")
        .arg(path)
        .env("GEOBATCH_SOURCE_BUCKET", &object.bucket)
        .env("GEOBATCH_SOURCE_KEY", &object.key)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|err| ExecFailure::Transient(format!("cannot start `sh -c {command}`: {err}")))?;
    let group = ProcessGroupGuard(child.id().and_then(|pid| i32::try_from(pid).ok()));
    let stdout = tokio::spawn(read_capped(child.stdout.take(), MAX_STDOUT_BYTES));
    let stderr = tokio::spawn(read_tail(child.stderr.take(), STDERR_TAIL_BYTES));
    let status = tokio::time::timeout(timeout, child.wait()).await;
    let status = match status {
        Ok(Ok(status)) => status,
        Ok(Err(err)) => return Err(ExecFailure::Transient(format!("waiting for it: {err}"))),
        Err(_elapsed) => {
            drop(group);
            let stderr = collect(stderr).await.unwrap_or_default();
            return Err(ExecFailure::Permanent(ErrorDetail {
                stderr: Some(lossy(&stderr)),
                ..ErrorDetail::new(
                    ErrorKind::ExecTimeout,
                    format!("`{command}` did not finish within {timeout:?}"),
                )
            }));
        }
    };
    // The shell has exited; anything it left behind in its group goes too.
    drop(group);
    let stderr = collect(stderr).await.unwrap_or_default();
    let (stdout, overflowed) = collect(stdout).await.unwrap_or_default();
    if !status.success() {
        return Err(ExecFailure::Permanent(ErrorDetail {
            exit_code: status.code(),
            stderr: Some(lossy(&stderr)),
            ..ErrorDetail::new(
                ErrorKind::ExecFailed,
                format!("`{command}` failed ({status})"),
            )
        }));
    }
    if overflowed {
        return Err(ExecFailure::Permanent(ErrorDetail {
            stderr: Some(lossy(&stderr)),
            ..ErrorDetail::new(
                ErrorKind::ExecOutputTooLarge,
                format!("`{command}` wrote more than {MAX_STDOUT_BYTES} bytes to stdout"),
            )
        }));
    }
    Ok(output_value(&stdout))
}

/// Standard output as a result value: the JSON it holds, or else its text.
pub fn output_value(stdout: &[u8]) -> Value {
    serde_json::from_slice(stdout).unwrap_or_else(|_| Value::String(lossy(stdout)))
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Waits briefly for a reader task: after a kill, a pipe held open by a stray process must
/// not hold the message.
async fn collect<T: Default>(task: tokio::task::JoinHandle<T>) -> Option<T> {
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .ok()
        .and_then(Result::ok)
}

/// Reads everything, keeping at most `limit` bytes; the flag says whether more came.
async fn read_capped(pipe: Option<impl AsyncRead + Unpin>, limit: usize) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut overflowed = false;
    let Some(mut pipe) = pipe else {
        return (kept, overflowed);
    };
    let mut buffer = vec![0; 64 * 1024];
    while let Ok(n) = pipe.read(&mut buffer).await {
        if n == 0 {
            break;
        }
        let room = limit.saturating_sub(kept.len());
        kept.extend_from_slice(&buffer[..n.min(room)]);
        overflowed |= n > room;
    }
    (kept, overflowed)
}

/// Reads everything, keeping the last `limit` bytes.
async fn read_tail(pipe: Option<impl AsyncRead + Unpin>, limit: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let Some(mut pipe) = pipe else {
        return kept;
    };
    let mut buffer = vec![0; 16 * 1024];
    while let Ok(n) = pipe.read(&mut buffer).await {
        if n == 0 {
            break;
        }
        kept.extend_from_slice(&buffer[..n]);
        if kept.len() > 2 * limit {
            kept.drain(..kept.len() - limit);
        }
    }
    if kept.len() > limit {
        kept.drain(..kept.len() - limit);
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object() -> ObjectRef {
        ObjectRef {
            bucket: "in".into(),
            key: "a b.geojson".into(),
            size: None,
            etag: None,
            version_id: None,
        }
    }

    #[test]
    fn json_output_is_embedded_as_json_and_anything_else_as_text() {
        assert_eq!(output_value(br#"{"n": 1}"#), serde_json::json!({"n": 1}));
        assert_eq!(output_value(b"plain\n"), Value::String("plain\n".into()));
    }

    #[tokio::test]
    async fn stdout_is_the_result_and_the_path_is_the_last_argument() {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), "[1, 2]").expect("write");
        let value = run("cat", file.path(), Duration::from_secs(10), &object())
            .await
            .map_err(|failure| format!("{failure:?}"))
            .expect("cat succeeds");
        assert_eq!(value, serde_json::json!([1, 2]));
        let key = run(
            "printf %s \"$GEOBATCH_SOURCE_KEY\" #",
            file.path(),
            Duration::from_secs(10),
            &object(),
        )
        .await
        .map_err(|failure| format!("{failure:?}"))
        .expect("printf succeeds");
        assert_eq!(key, Value::String("a b.geojson".into()));
    }

    #[tokio::test]
    async fn a_failing_command_reports_its_exit_code_and_stderr() {
        let failure = run(
            "echo broken >&2; exit 3; true",
            Path::new("/nonexistent"),
            Duration::from_secs(10),
            &object(),
        )
        .await
        .expect_err("exit 3 fails");
        let ExecFailure::Permanent(detail) = failure else {
            panic!("not permanent: {failure:?}");
        };
        assert_eq!(detail.kind, ErrorKind::ExecFailed);
        assert_eq!(detail.exit_code, Some(3));
        assert_eq!(detail.stderr.as_deref(), Some("broken\n"));
    }

    #[tokio::test]
    async fn a_command_past_its_timeout_is_killed_with_its_children() {
        let failure = run(
            "echo started >&2; sleep 30; echo",
            Path::new("/nonexistent"),
            Duration::from_millis(300),
            &object(),
        )
        .await
        .expect_err("times out");
        let ExecFailure::Permanent(detail) = failure else {
            panic!("not permanent: {failure:?}");
        };
        assert_eq!(detail.kind, ErrorKind::ExecTimeout);
        // The stray `sleep` holds stderr open; only killing the group lets it be collected.
        assert_eq!(detail.stderr.as_deref(), Some("started\n"));
    }

    #[tokio::test]
    async fn the_tail_of_a_long_stderr_is_kept() {
        let tail = read_tail(Some(&b"abcdefghij"[..]), 4).await;
        assert_eq!(tail, b"ghij");
        let (kept, overflowed) = read_capped(Some(&b"abcdefghij"[..]), 4).await;
        assert_eq!((kept.as_slice(), overflowed), (&b"abcd"[..], true));
    }
}
