//! The stop signal both services obey.
//!
//! ECS stops a task with SIGTERM and, after the stop timeout, SIGKILL; a person presses
//! Ctrl-C. Either one starts a graceful shutdown; the services pass this future down instead
//! of installing handlers of their own, so tests can hand in any future they like.

use std::io;

/// Resolves when the process receives SIGTERM or SIGINT, naming the signal.
pub async fn signal() -> io::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => Ok("SIGTERM"),
        _ = int.recv() => Ok("SIGINT"),
    }
}
