//! Controller benchmark against the emulator, for `docs/benchmarks.md` ("## Controller").
//!
//! Runs the built `geobatch-controller` binary (pass its path; use the release build) with
//! the default 5 s poll interval against a private moto, then measures:
//! 1. scale-out latency: from `SendMessage` returning (the message is visible) until ECS
//!    reports the service's new desired count, i.e. the controller's `UpdateService` call
//!    has completed, over rounds sent at different phases of the poll cycle;
//! 2. idle cost: resident set size and CPU of the controller process over a minute of
//!    polling an empty queue.
//!
//! `make bench-controller` builds and runs it.

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use geobatch_common::testing::Emulator;
use support::Fleet;

const ROUNDS: u32 = 20;
const POLL_SECS: f64 = 5.0;
const IDLE_SECS: u64 = 60;

#[tokio::main]
async fn main() {
    let binary = std::env::args()
        .nth(1)
        .expect("usage: bench_controller PATH/TO/geobatch-controller");
    let emulator = Emulator::start();
    let fleet = Fleet::create(&emulator, 0, 0).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("controller.toml");
    let mut file = fleet.config(|p| {
        p.poll_interval_secs = POLL_SECS;
        p.require_empty_receives = false;
    });
    file.cloudwatch_interval_secs = 60.0;
    file.max_backoff_secs = 60.0;
    std::fs::write(&config, toml::to_string(&file).expect("toml")).expect("write config");

    let mut child = Command::new(&binary)
        .args(["run", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .envs(emulator.child_env())
        .env("GEOBATCH_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the controller");
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut latencies = Vec::new();
    for round in 0..ROUNDS {
        // Spread the sends over the poll cycle.
        let phase = POLL_SECS * f64::from(round) / f64::from(ROUNDS);
        tokio::time::sleep(Duration::from_secs_f64(phase)).await;
        let sent = Instant::now();
        fleet.send(1).await;
        wait_for(&fleet, |desired| desired >= 1).await;
        latencies.push(sent.elapsed());
        let receipts = fleet.receive(10).await;
        fleet.delete(&receipts).await;
        wait_for(&fleet, |desired| desired == 0).await;
    }
    latencies.sort();
    let secs = |d: &Duration| d.as_secs_f64();
    let mean = latencies.iter().map(secs).sum::<f64>() / latencies.len() as f64;
    println!(
        "scale-out latency over {ROUNDS} rounds, poll interval {POLL_SECS} s: min {:.2} s, \
         median {:.2} s, mean {mean:.2} s, p90 {:.2} s, max {:.2} s",
        secs(&latencies[0]),
        secs(&latencies[latencies.len() / 2]),
        secs(&latencies[latencies.len() * 9 / 10]),
        secs(&latencies[latencies.len() - 1]),
    );

    let pid = child.id();
    let cpu_before = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(IDLE_SECS)).await;
    let cpu_after = cpu_ticks(pid);
    let (rss_kib, hwm_kib) = memory_kib(pid);
    // Linux reports CPU time in clock ticks of 1/100 s.
    let cpu_secs = (cpu_after - cpu_before) as f64 / 100.0;
    println!(
        "idle over {IDLE_SECS} s (empty queue, 0 tasks): RSS {:.1} MiB (peak {:.1} MiB), CPU \
         {cpu_secs:.2} s = {:.2} % of one core",
        rss_kib as f64 / 1024.0,
        hwm_kib as f64 / 1024.0,
        100.0 * cpu_secs / IDLE_SECS as f64,
    );

    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = child.wait();
}

async fn wait_for(fleet: &Fleet, done: impl Fn(i32) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done(fleet.service_desired().await) {
        assert!(
            Instant::now() < deadline,
            "the controller did not act within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// User plus system CPU time of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).expect("stat format");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields[n - 3].parse::<u64>().expect("tick count");
    field(14) + field(15)
}

/// Current and peak resident set size, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let get = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("memory field")
    };
    (get("VmRSS:"), get("VmHWM:"))
}
