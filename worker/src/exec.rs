//! Running an external command on a downloaded file (`--exec`), the classic `process_file`.
//!
//! The command runs through `sh -c` with the file path appended as its last argument and the
//! source as `GEOBATCH_SOURCE_BUCKET`/`GEOBATCH_SOURCE_KEY`. It gets its own process group,
//! and the whole group is killed when the shell exits, at the timeout, when the output limit
//! is passed and when the run is abandoned (shutdown), so nothing it started in the group
//! outlives it. Its standard output (at most [`ExecOptions::max_output_bytes`]) is the
//! result; its standard error is kept (the tail, bounded) for the error report.
//!
//! A failure is never turned into a success: output cut short (too large, a read error, or
//! still held open by a process that left the group) fails the file, and a command that
//! cannot be started is a permanent `exec_not_started`, not a retry. The child is waited for
//! by [`crate::reaper`], which also reaps orphans when the worker is PID 1.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::event::ObjectRef;
use crate::kind::ErrorKind;
use crate::reaper;
use crate::results::ErrorDetail;

/// Default of `--exec-max-output`: the largest standard output accepted as a result.
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 64 * 1024 * 1024;
/// How much of the end of standard error an error report keeps.
pub const STDERR_TAIL_BYTES: usize = 64 * 1024;
/// How long the output may stay open after the command's group is gone: longer means a
/// process that left the group holds it, and the output is incomplete.
pub const OUTPUT_DRAIN: Duration = Duration::from_secs(2);
/// Exit statuses with which `sh` says the command could not be run (126: not executable,
/// 127: not found).
const SHELL_CANNOT_RUN: [i32; 2] = [126, 127];

/// How `--exec` runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOptions {
    /// The shell command; the file path is appended as its last argument.
    pub command: String,
    /// Longest one run may take before its group is killed and the file reported.
    pub timeout: Duration,
    /// Largest standard output accepted; one byte more kills the group and fails the file.
    pub max_output_bytes: usize,
}

impl ExecOptions {
    /// `command` with `timeout` and the default output limit.
    pub fn new(command: impl Into<String>, timeout: Duration) -> ExecOptions {
        ExecOptions {
            command: command.into(),
            timeout,
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
        }
    }
}

/// Why a command produced no result.
#[derive(Debug)]
pub enum ExecFailure {
    /// The command could not run or failed: report it.
    Permanent(ErrorDetail),
    /// The worker could not start or wait for it for a reason of its own (no process slots,
    /// memory, a lost exit status); another try may succeed.
    Transient(String),
}

/// Kills a command's whole process group when dropped, so neither a timeout, an output
/// limit nor an abandoned message (shutdown) leaves its processes running.
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

/// What reading standard output gave.
#[derive(Debug, Default)]
struct Captured {
    bytes: Vec<u8>,
    /// More than the limit came: reading stopped there.
    overflowed: bool,
    /// A read failed.
    failed: Option<String>,
}

/// How the wait for the command ended.
enum Ended {
    Exited(ExitStatus),
    TimedOut,
    OutputTooLarge,
}

/// Runs the command on `path` and returns its standard output as the result.
pub async fn run(
    options: &ExecOptions,
    path: &Path,
    object: &ObjectRef,
) -> Result<Value, ExecFailure> {
    let command = &options.command;
    let mut shell = Command::new("sh");
    shell
        .arg("-c")
        .arg(format!("{command} \"$1\""))
        .arg("geobatch-exec")
        .arg(path)
        .env("GEOBATCH_SOURCE_BUCKET", &object.bucket)
        .env("GEOBATCH_SOURCE_KEY", &object.key)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let (mut child, exited) =
        reaper::spawn(&mut shell).map_err(|err| not_started(command, &err))?;
    let group = ProcessGroupGuard(i32::try_from(child.id()).ok());
    let pipes = child
        .stdout
        .take()
        .map(tokio::process::ChildStdout::from_std)
        .transpose()
        .and_then(|stdout| {
            let stderr = child
                .stderr
                .take()
                .map(tokio::process::ChildStderr::from_std)
                .transpose()?;
            Ok((stdout, stderr))
        });
    let (stdout, stderr) = pipes.map_err(|err| {
        ExecFailure::Transient(format!("cannot read the output of `{command}`: {err}"))
    })?;
    let (overflow_tx, overflow_rx) = tokio::sync::oneshot::channel();
    let mut stdout = tokio::spawn(read_capped(stdout, options.max_output_bytes, overflow_tx));
    let stderr = tokio::spawn(read_tail(stderr, STDERR_TAIL_BYTES));
    let ended = tokio::select! {
        status = exited => match status {
            Ok(status) => Ended::Exited(status),
            Err(_lost) => {
                return Err(ExecFailure::Transient(format!(
                    "the exit status of `{command}` was lost"
                )));
            }
        },
        () = tokio::time::sleep(options.timeout) => Ended::TimedOut,
        Ok(()) = overflow_rx => Ended::OutputTooLarge,
    };
    // The shell has exited, or must go: anything left in its group goes too.
    drop(group);
    let stderr = collect(stderr).await.unwrap_or_default();
    let stdout = match ended {
        Ended::Exited(_) => collect(&mut stdout).await,
        Ended::TimedOut | Ended::OutputTooLarge => {
            stdout.abort();
            None
        }
    };
    judge(options, ended, stdout, stderr)
}

/// A command `sh` itself could not be started for: permanent when the cause is permanent
/// (no `sh`, not executable), else transient (out of processes or memory).
fn not_started(command: &str, err: &std::io::Error) -> ExecFailure {
    let message = format!("cannot start `sh -c {command}`: {err}");
    match err.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
            ExecFailure::Permanent(ErrorDetail::new(ErrorKind::ExecNotStarted, message))
        }
        _ => ExecFailure::Transient(message),
    }
}

/// The outcome of a command from how it ended and what its pipes gave (`stdout` `None`:
/// standard output was not read to its end).
fn judge(
    options: &ExecOptions,
    ended: Ended,
    stdout: Option<Captured>,
    stderr: Vec<u8>,
) -> Result<Value, ExecFailure> {
    let command = &options.command;
    let failure = |kind, message: String, exit_code| {
        Err(ExecFailure::Permanent(ErrorDetail {
            exit_code,
            stderr: Some(lossy(&stderr)),
            ..ErrorDetail::new(kind, message)
        }))
    };
    let status = match ended {
        Ended::TimedOut => {
            return failure(
                ErrorKind::ExecTimeout,
                format!("`{command}` did not finish within {:?}", options.timeout),
                None,
            );
        }
        Ended::OutputTooLarge => return too_large(options, failure),
        Ended::Exited(status) => status,
    };
    if stdout.as_ref().is_some_and(|stdout| stdout.overflowed) {
        return too_large(options, failure);
    }
    if status
        .code()
        .is_some_and(|code| SHELL_CANNOT_RUN.contains(&code))
    {
        return failure(
            ErrorKind::ExecNotStarted,
            format!("`{command}` cannot be run ({status}): not found or not executable"),
            status.code(),
        );
    }
    if !status.success() {
        return failure(
            ErrorKind::ExecFailed,
            format!("`{command}` failed ({status})"),
            status.code(),
        );
    }
    let Some(stdout) = stdout else {
        return failure(
            ErrorKind::ExecOutputIncomplete,
            format!(
                "`{command}` exited but its standard output stayed open for {OUTPUT_DRAIN:?} \
                 more (a process that left its group holds it): the output may be incomplete"
            ),
            status.code(),
        );
    };
    if let Some(error) = stdout.failed {
        return failure(
            ErrorKind::ExecOutputIncomplete,
            format!("reading the standard output of `{command}` failed: {error}"),
            status.code(),
        );
    }
    Ok(output_value(&stdout.bytes))
}

fn too_large<F>(options: &ExecOptions, failure: F) -> Result<Value, ExecFailure>
where
    F: Fn(ErrorKind, String, Option<i32>) -> Result<Value, ExecFailure>,
{
    failure(
        ErrorKind::ExecOutputTooLarge,
        format!(
            "`{}` wrote more than {} bytes to stdout (--exec-max-output)",
            options.command, options.max_output_bytes
        ),
        None,
    )
}

/// Standard output as a result value: the JSON it holds, or else its text.
pub fn output_value(stdout: &[u8]) -> Value {
    serde_json::from_slice(stdout).unwrap_or_else(|_| Value::String(lossy(stdout)))
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Waits briefly for a reader task: after the group is killed, a pipe held open by a process
/// that left the group must not hold the message (`None` then).
async fn collect<T: Default>(
    task: impl std::future::Future<Output = Result<T, tokio::task::JoinError>>,
) -> Option<T> {
    match tokio::time::timeout(OUTPUT_DRAIN, task).await {
        Ok(Ok(value)) => Some(value),
        Ok(Err(_)) | Err(_) => None,
    }
}

/// Reads up to `limit` bytes; at the first byte past it, says so on `overflow` and stops.
async fn read_capped(
    pipe: Option<impl AsyncRead + Unpin>,
    limit: usize,
    overflow: tokio::sync::oneshot::Sender<()>,
) -> Captured {
    let mut captured = Captured::default();
    let Some(mut pipe) = pipe else {
        return captured;
    };
    let mut buffer = vec![0; 64 * 1024];
    loop {
        match pipe.read(&mut buffer).await {
            Ok(0) => break,
            Ok(n) => {
                let room = limit.saturating_sub(captured.bytes.len());
                captured.bytes.extend_from_slice(&buffer[..n.min(room)]);
                if n > room {
                    captured.overflowed = true;
                    let _unheard = overflow.send(());
                    break;
                }
            }
            Err(err) => {
                captured.failed = Some(err.to_string());
                break;
            }
        }
    }
    captured
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

    fn options(command: &str) -> ExecOptions {
        ExecOptions {
            command: command.to_owned(),
            timeout: Duration::from_secs(20),
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
        }
    }

    async fn permanent(options: &ExecOptions) -> ErrorDetail {
        match run(options, Path::new("/nonexistent"), &object()).await {
            Ok(value) => panic!("succeeded with {value}"),
            Err(ExecFailure::Permanent(detail)) => detail,
            Err(ExecFailure::Transient(message)) => panic!("not permanent: {message}"),
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
        let value = run(&options("cat"), file.path(), &object())
            .await
            .map_err(|failure| format!("{failure:?}"))
            .expect("cat succeeds");
        assert_eq!(value, serde_json::json!([1, 2]));
        let key = run(
            &options("printf %s \"$GEOBATCH_SOURCE_KEY\" #"),
            file.path(),
            &object(),
        )
        .await
        .map_err(|failure| format!("{failure:?}"))
        .expect("printf succeeds");
        assert_eq!(key, Value::String("a b.geojson".into()));
    }

    #[tokio::test]
    async fn a_failing_command_reports_its_exit_code_and_stderr() {
        let detail = permanent(&options("echo broken >&2; exit 3; true")).await;
        assert_eq!(detail.kind, ErrorKind::ExecFailed);
        assert_eq!(detail.exit_code, Some(3));
        assert_eq!(detail.stderr.as_deref(), Some("broken\n"));
    }

    #[tokio::test]
    async fn a_command_past_its_timeout_is_killed_with_its_children() {
        let detail = permanent(&ExecOptions {
            timeout: Duration::from_millis(300),
            ..options("echo started >&2; sleep 30; echo")
        })
        .await;
        assert_eq!(detail.kind, ErrorKind::ExecTimeout);
        // The `sleep` holds stderr open; only killing the group lets it be collected.
        assert_eq!(detail.stderr.as_deref(), Some("started\n"));
    }

    #[tokio::test]
    async fn the_tail_of_a_long_stderr_is_kept() {
        let tail = read_tail(Some(&b"abcdefghij"[..]), 4).await;
        assert_eq!(tail, b"ghij");
        let (overflow, _heard) = tokio::sync::oneshot::channel();
        let captured = read_capped(Some(&b"abcdefghij"[..]), 4, overflow).await;
        assert_eq!(
            (captured.bytes.as_slice(), captured.overflowed),
            (&b"abcd"[..], true)
        );
    }

    /// Issue 12, class 5: a process that leaves the group and keeps standard output open
    /// used to turn the file into an empty success; now the output is incomplete, a failure.
    #[tokio::test]
    async fn output_held_open_by_a_process_that_left_the_group_is_a_failure() {
        let detail = permanent(&options("setsid sleep 5 & echo partial; true")).await;
        assert_eq!(detail.kind, ErrorKind::ExecOutputIncomplete, "{detail:?}");
    }

    /// A command that cannot be run is a permanent `exec_not_started`, not five retries.
    #[tokio::test]
    async fn a_command_that_cannot_be_run_is_not_started() {
        let missing = permanent(&options("/nonexistent/geobatch-no-such-program")).await;
        assert_eq!(missing.kind, ErrorKind::ExecNotStarted, "{missing:?}");
        assert_eq!(missing.exit_code, Some(127));
        let dir = tempfile::tempdir().expect("temp dir");
        let script = dir.path().join("not-executable.sh");
        std::fs::write(&script, "#!/bin/sh\necho hi\n").expect("write");
        let denied = permanent(&options(&script.display().to_string())).await;
        assert_eq!(denied.kind, ErrorKind::ExecNotStarted, "{denied:?}");
        assert_eq!(denied.exit_code, Some(126));
    }

    /// Output past the limit kills the group at once, whatever the command would do next,
    /// and is reported as too large.
    #[tokio::test]
    async fn endless_output_is_cut_at_the_limit_and_its_group_killed() {
        let detail = permanent(&ExecOptions {
            max_output_bytes: 1024,
            // `trap '' PIPE`: the writer ignores SIGPIPE, so only the kill stops it.
            ..options("trap '' PIPE; while :; do echo xxxxxxxxxxxxxxxx; done 2>/dev/null; true")
        })
        .await;
        assert_eq!(detail.kind, ErrorKind::ExecOutputTooLarge, "{detail:?}");
        let exact = run(
            &ExecOptions {
                max_output_bytes: 6,
                ..options("printf 'abcdef' #")
            },
            Path::new("/nonexistent"),
            &object(),
        )
        .await
        .map_err(|failure| format!("{failure:?}"))
        .expect("exactly the limit is accepted");
        assert_eq!(exact, Value::String("abcdef".into()));
    }

    /// The group is killed when the shell exits: a background job it left in its group
    /// does not outlive the run.
    #[tokio::test]
    async fn processes_left_in_the_group_are_killed_when_the_shell_exits() {
        let dir = tempfile::tempdir().expect("temp dir");
        let marker = dir.path().join("still-running");
        let command = format!(
            "(sleep 1; touch {}) >/dev/null 2>&1 & echo done #",
            marker.display()
        );
        let value = run(&options(&command), Path::new("/nonexistent"), &object())
            .await
            .map_err(|failure| format!("{failure:?}"))
            .expect("the shell succeeds");
        assert_eq!(value, Value::String("done\n".into()));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(
            !marker.exists(),
            "the background job ran on after the shell"
        );
    }
}
