//! Waiting for `--exec` children, and reaping orphans when the worker is PID 1.
//!
//! In a container without an init process the worker is PID 1, so every process an `--exec`
//! command leaves behind is re-parented to it when its parent exits. Nobody else will ever
//! wait for those, and each would stay a zombie holding a slot of the PID table.
//!
//! One thread waits for every child the worker starts: the commands spawned through
//! [`spawn`] get their exit status through a channel, and, only when the worker is PID 1,
//! any other child that exits is reaped and logged. The decision: orphans are reaped only as
//! PID 1 (the worker does not make itself a sub-reaper), because elsewhere the real init
//! reaps them, and `waitpid(-1)` would take the status of children this module did not
//! start. So **every child process of the worker must be started through [`spawn`]**; in
//! particular `tokio::process` must not be used in the worker (as PID 1 its statuses would
//! be taken here). Spawning and registering happen under the lock the thread holds while it
//! reaps, so it can never reap a command before the command is registered and lose its
//! status.

use std::collections::HashMap;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use tokio::sync::oneshot;

/// How often the thread looks for exited children while a registered command runs: the
/// delay between a command's exit and the worker seeing it.
const POLL: Duration = Duration::from_millis(20);
/// How often, as PID 1 with no command running, the thread reaps orphans.
const ORPHAN_POLL: Duration = Duration::from_millis(500);

#[derive(Default)]
struct Registry {
    /// Commands being waited for, by pid.
    waiting: HashMap<i32, oneshot::Sender<ExitStatus>>,
}

struct Reaper {
    registry: Mutex<Registry>,
    wake: Condvar,
    /// Whether this process is PID 1, and so the parent of every orphan.
    init: bool,
}

fn reaper() -> &'static Reaper {
    static REAPER: OnceLock<&'static Reaper> = OnceLock::new();
    REAPER.get_or_init(|| {
        let reaper: &'static Reaper = Box::leak(Box::new(Reaper {
            registry: Mutex::new(Registry::default()),
            wake: Condvar::new(),
            init: std::process::id() == 1,
        }));
        let started = std::thread::Builder::new()
            .name("geobatch-reaper".to_owned())
            .spawn(move || reaper.run());
        if let Err(err) = started {
            tracing::error!(error = %err, "cannot start the child reaper thread");
        }
        reaper
    })
}

/// Starts the reaper now (the service does at start-up, so orphans are reaped even before
/// the first `--exec` command). Returns whether orphans are reaped (the worker is PID 1).
pub fn start() -> bool {
    let reaper = reaper();
    if reaper.init {
        tracing::info!("running as PID 1: exited orphan processes are reaped");
    }
    reaper.init
}

/// Spawns `command` and returns it with a channel that gets its exit status. The caller must
/// not wait for the child itself.
pub fn spawn(command: &mut Command) -> io::Result<(Child, oneshot::Receiver<ExitStatus>)> {
    let reaper = reaper();
    let mut registry = reaper.lock();
    let child = command.spawn()?;
    let (sender, receiver) = oneshot::channel();
    if let Ok(pid) = i32::try_from(child.id()) {
        registry.waiting.insert(pid, sender);
    }
    drop(registry);
    reaper.wake.notify_one();
    Ok((child, receiver))
}

impl Reaper {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        // Every update is one insert or remove: a poisoned lock is still consistent.
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn run(&self) {
        let mut registry = self.lock();
        loop {
            self.reap(&mut registry);
            let pause = if registry.waiting.is_empty() {
                if self.init {
                    ORPHAN_POLL
                } else {
                    Duration::MAX
                }
            } else {
                POLL
            };
            // A spawn wakes the thread at once; otherwise it sleeps `pause` without the lock.
            registry = if pause == Duration::MAX {
                self.wake
                    .wait(registry)
                    .unwrap_or_else(PoisonError::into_inner)
            } else {
                self.wake
                    .wait_timeout(registry, pause)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            };
        }
    }

    /// Collects every exited child: registered ones by pid; as PID 1, any other too.
    fn reap(&self, registry: &mut Registry) {
        let exited: Vec<(i32, ExitStatus)> = registry
            .waiting
            .keys()
            .filter_map(|&pid| wait_nohang(pid).map(|status| (pid, status)))
            .collect();
        for (pid, status) in exited {
            deliver(registry, pid, status);
        }
        if !self.init {
            return;
        }
        while let Some((pid, status)) = wait_any_nohang() {
            if !deliver(registry, pid, status) {
                tracing::debug!(pid, ?status, "reaped an orphan process");
            }
        }
    }
}

/// Hands `status` to whoever waits for `pid`; false if nobody registered it (an orphan).
fn deliver(registry: &mut Registry, pid: i32, status: ExitStatus) -> bool {
    match registry.waiting.remove(&pid) {
        Some(sender) => {
            // The command may have been abandoned (timeout, shutdown): nobody listens then.
            let _unheard = sender.send(status);
            true
        }
        None => false,
    }
}

/// `waitpid(pid, WNOHANG)`: the status if `pid` has exited, reaping it.
fn wait_nohang(pid: i32) -> Option<ExitStatus> {
    let mut status = 0;
    // SAFETY: waitpid only writes the status integer we pass it.
    let reaped = unsafe { libc::waitpid(pid, &raw mut status, libc::WNOHANG) };
    (reaped == pid).then(|| ExitStatus::from_raw(status))
}

/// `waitpid(-1, WNOHANG)`: any exited child, reaping it.
fn wait_any_nohang() -> Option<(i32, ExitStatus)> {
    let mut status = 0;
    // SAFETY: as above.
    let reaped = unsafe { libc::waitpid(-1, &raw mut status, libc::WNOHANG) };
    (reaped > 0).then(|| (reaped, ExitStatus::from_raw(status)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_registered_child_gets_its_exit_status() {
        let (_child, status) = spawn(Command::new("sh").args(["-c", "exit 7"])).expect("spawns");
        let status = tokio::time::timeout(Duration::from_secs(30), status)
            .await
            .expect("reaped in time")
            .expect("status sent");
        assert_eq!(status.code(), Some(7));
    }

    #[tokio::test]
    async fn children_started_together_each_get_their_own_status() {
        let mut waiting = Vec::new();
        for code in 0..8 {
            let script = format!("sleep 0.0{code}; exit {code}");
            let (_child, status) = spawn(Command::new("sh").args(["-c", &script])).expect("spawns");
            waiting.push((code, status));
        }
        for (code, status) in waiting {
            let status = tokio::time::timeout(Duration::from_secs(30), status)
                .await
                .expect("reaped in time")
                .expect("status sent");
            assert_eq!(status.code(), Some(code));
        }
    }

    /// Set for the run of [`orphans_are_reaped_as_pid_1`] inside its own PID namespace.
    const PID1_RUN: &str = "GEOBATCH_REAPER_PID1_RUN";

    /// Zombie processes in this PID namespace's `/proc`.
    fn zombies() -> Vec<String> {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return vec!["/proc unreadable".to_owned()];
        };
        entries
            .filter_map(Result::ok)
            .filter(|entry| entry.file_name().to_string_lossy().parse::<u32>().is_ok())
            .filter_map(|entry| std::fs::read_to_string(entry.path().join("stat")).ok())
            // The state follows the command name, which is in parentheses.
            .filter(|stat| {
                stat.rsplit_once(") ")
                    .is_some_and(|(_, rest)| rest.starts_with('Z'))
            })
            .collect()
    }

    /// Processes (zombies included) of this PID namespace whose command is `name`.
    fn processes_named(name: &str) -> usize {
        std::fs::read_dir("/proc")
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|entry| std::fs::read_to_string(entry.path().join("comm")).ok())
                    .filter(|comm| comm.trim() == name)
                    .count()
            })
            .unwrap_or(0)
    }

    /// Issue 12, class 5: as PID 1 (the worker in a container without an init), processes an
    /// `--exec` command leaves behind are re-parented to the worker and must be reaped, or
    /// they stay zombies. Runs this test binary as PID 1 of a new PID namespace (`unshare`,
    /// which needs root, as the CI and the dev machine have) and checks what it saw there.
    #[test]
    fn orphans_are_reaped_as_pid_1() {
        let exe = std::env::current_exe().expect("test binary");
        let run = Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc"])
            .arg(exe)
            .args([
                "--exact",
                "reaper::tests::orphans_left_by_commands_do_not_stay_zombies",
            ])
            .args(["--ignored", "--nocapture", "--test-threads", "1"])
            .env(PID1_RUN, "1")
            .output()
            .expect("unshare runs (util-linux)");
        let stdout = String::from_utf8_lossy(&run.stdout);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(
            run.status.success() && stdout.contains("1 passed"),
            "as PID 1 ({}):\n{stdout}\n{stderr}",
            run.status
        );
    }

    /// The part of [`orphans_are_reaped_as_pid_1`] that runs as PID 1.
    #[tokio::test]
    #[ignore = "run as PID 1 by orphans_are_reaped_as_pid_1"]
    async fn orphans_left_by_commands_do_not_stay_zombies() {
        assert_eq!(
            std::env::var(PID1_RUN).as_deref(),
            Ok("1"),
            "run by the PID 1 test"
        );
        assert_eq!(std::process::id(), 1, "not PID 1 in its namespace");
        assert!(start(), "PID 1 reaps orphans");
        // Each shell exits at once, leaving two children that outlive it: they become PID
        // 1's children and exit a little later.
        for _ in 0..4 {
            let (_child, status) =
                spawn(Command::new("sh").args(["-c", "sleep 0.3 & sleep 0.4 & exit 0"]))
                    .expect("spawns");
            let status = tokio::time::timeout(Duration::from_secs(30), status)
                .await
                .expect("reaped in time")
                .expect("status sent");
            assert!(status.success());
        }
        // The orphans exist, not yet exited (else this test would prove nothing).
        assert_eq!(processes_named("sleep"), 8, "the orphans are running");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let sleeping = processes_named("sleep");
            let zombies = zombies();
            if sleeping == 0 && zombies.is_empty() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "left as zombies: {zombies:?}"
            );
        }
    }
}
