//! The stop signals both services obey, and the bound on how long stopping may take.
//!
//! ECS stops a task with SIGTERM and SIGKILLs it after the stop timeout; systemd and
//! `docker stop` do the same; a person presses Ctrl-C, and again when in a hurry. So both
//! binaries stop the same way, through [`graceful`]:
//! - the first SIGTERM or SIGINT starts a graceful stop (the service finishes or hands back
//!   its work);
//! - a second signal exits at once with [`EXIT_SECOND_SIGNAL`];
//! - a graceful stop that is still running `limit` after the first signal is cut short with
//!   [`EXIT_OVERRAN`], whatever the process is doing, so it never outlives the time its
//!   supervisor gives it (work it held comes back through the queue's visibility timeout).
//!
//! The services take the stop as a future instead of installing handlers of their own, so
//! tests hand in any future they like; only the binaries call [`graceful`].

use std::io;
use std::time::Duration;

/// Exit status after a second stop signal: 128 + SIGINT, as shells report an interrupt.
pub const EXIT_SECOND_SIGNAL: i32 = 130;

/// Exit status when a graceful stop overran its limit (as `timeout(1)` reports one).
pub const EXIT_OVERRAN: i32 = 124;

/// Resolves when the process receives SIGTERM or SIGINT, naming the signal.
async fn signal() -> io::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => Ok("SIGTERM"),
        _ = int.recv() => Ok("SIGINT"),
    }
}

/// Resolves on the first SIGTERM/SIGINT, after arranging that a second one exits at once
/// and that the process exits `limit` later if it is still running. If the signal handlers
/// cannot be installed it logs why and never resolves (the supervisor's SIGKILL still
/// works).
pub async fn graceful(limit: Duration) {
    let first = match signal().await {
        Ok(first) => first,
        Err(err) => {
            tracing::error!(error = %err, "cannot listen for stop signals; stop with SIGKILL");
            return std::future::pending().await;
        }
    };
    tracing::info!(
        signal = first,
        limit_secs = limit.as_secs_f64(),
        "stop requested; stopping gracefully"
    );
    tokio::spawn(async {
        if let Ok(second) = signal().await {
            tracing::warn!(signal = second, "second stop signal; exiting now");
            std::process::exit(EXIT_SECOND_SIGNAL);
        }
    });
    // A plain thread, not a task: the deadline must hold even when every runtime thread is
    // busy or blocked.
    let deadline = std::thread::Builder::new()
        .name("stop-deadline".into())
        .spawn(move || {
            std::thread::sleep(limit);
            tracing::error!(
                limit_secs = limit.as_secs_f64(),
                "graceful stop overran its limit; exiting now"
            );
            std::process::exit(EXIT_OVERRAN);
        });
    if let Err(err) = deadline {
        tracing::error!(error = %err, "cannot start the stop deadline; the stop is unbounded");
    }
}
