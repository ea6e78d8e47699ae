//! The integration-test harness: a real moto server on a free loopback port.
//!
//! Tests talk to it over HTTP through the official SDK clients, configured exactly as in
//! production except for the endpoint, region and static test credentials. The emulator is
//! found at `$GEOBATCH_MOTO_SERVER` or in the workspace's `.venv` (created by `make venv`).
//! When it is missing or does not come up, the harness panics with the fix: integration tests
//! fail loudly, they never skip.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};

/// The region every test uses.
pub const REGION: &str = "us-east-1";
/// moto's default account id, which appears in the ARNs and queue URLs it returns.
pub const ACCOUNT_ID: &str = "123456789012";

const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How many free ports [`Emulator::start`] tries before it gives up.
const PORT_ATTEMPTS: usize = 5;

/// A running moto server. Dropping it stops the server.
///
/// The server runs under a tiny shell guard that kills it when the guard's stdin closes, so
/// the emulator also goes away when the test process exits without running destructors
/// (as it does for the per-process [`Emulator::shared`] instance).
pub struct Emulator {
    guard: Mutex<Option<(Child, ChildStdin)>>,
    port: u16,
}

impl Emulator {
    /// Starts a private emulator, for tests that stop or restart it.
    ///
    /// The port is picked free but released before moto binds it, so another listener of
    /// the test process can take it in between; moto then exits, and the emulator is started
    /// again on a new port.
    pub fn start() -> Emulator {
        let mut last_failure = String::new();
        for _attempt in 0..PORT_ATTEMPTS {
            match Emulator::try_start_on(free_port()) {
                Ok(emulator) => return emulator,
                Err(failure) => last_failure = failure,
            }
        }
        panic!("{last_failure}");
    }

    /// Starts an emulator on a given port: lets a test bring the emulator back where clients
    /// already point after stopping it.
    pub fn start_on(port: u16) -> Emulator {
        Emulator::try_start_on(port).unwrap_or_else(|failure| panic!("{failure}"))
    }

    fn try_start_on(port: u16) -> Result<Emulator, String> {
        let server = moto_server_path();
        assert!(
            server.is_file(),
            "moto_server not found at {}. Run `make venv` to install the pinned moto[server] \
             into .venv, or set GEOBATCH_MOTO_SERVER to a moto_server executable. Integration \
             tests need the emulator and do not skip without it.",
            server.display()
        );
        // The shell lives exactly as long as moto (so a moto that dies is seen as an exited
        // child), and a reader of its stdin, passed on as fd 3 because a background job's
        // stdin is /dev/null, kills moto when the pipe closes.
        let script = format!(
            "exec 3<&0; '{}' -H 127.0.0.1 -p {port} </dev/null >/dev/null 2>&1 & pid=$!; \
             {{ read _ignored <&3; kill $pid 2>/dev/null; }} & \
             wait $pid 2>/dev/null; exit 0",
            server.display()
        );
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("could not spawn `sh` to start moto: {err}"));
        let stdin = child
            .stdin
            .take()
            .unwrap_or_else(|| panic!("the moto guard shell has no stdin pipe"));
        let emulator = Emulator {
            guard: Mutex::new(Some((child, stdin))),
            port,
        };
        if let Err(failure) = emulator.wait_until_ready() {
            // Not ours to wait for: the port may belong to whoever holds it.
            emulator.end_server();
            return Err(failure);
        }
        Ok(emulator)
    }

    /// One emulator shared by every test of this test binary; tests isolate themselves by
    /// using unique resource names (see [`unique_name`]).
    pub fn shared() -> &'static Emulator {
        static SHARED: OnceLock<Emulator> = OnceLock::new();
        SHARED.get_or_init(Emulator::start)
    }

    /// The emulator's base URL, the value of `AWS_ENDPOINT_URL` for clients.
    pub fn endpoint_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port the emulator listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// SDK configuration pointing at the emulator, built the same way the standard chain
    /// builds it from `AWS_ENDPOINT_URL`, `AWS_REGION` and static credentials.
    pub async fn sdk_config(&self) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(self.endpoint_url())
            .credentials_provider(aws_credential_types::Credentials::new(
                "testing",
                "testing",
                None,
                None,
                "geobatch-tests",
            ))
            .load()
            .await
    }

    /// Environment for a child process (a geobatch binary under test) so it reaches this
    /// emulator through the standard AWS variables.
    pub fn child_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint_url()),
            ("AWS_REGION", REGION.to_owned()),
            ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ]
    }

    /// Clears every resource in the emulator (`POST /moto-api/reset`). Only for tests that
    /// own a private emulator: a reset of the shared one would pull resources from under
    /// tests running in parallel.
    pub fn reset(&self) {
        let response = self.request("POST", "/moto-api/reset");
        assert!(
            response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200"),
            "moto reset failed: {response}"
        );
    }

    /// Stops the server now (for tests of what happens while AWS is unreachable).
    pub fn stop(&self) {
        if self.end_server() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Ends the guard shell and with it moto; false if it was already ended.
    fn end_server(&self) -> bool {
        let taken = self
            .guard
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        match taken {
            Some((mut child, stdin)) => {
                drop(stdin);
                let _exited = child.wait();
                true
            }
            None => false,
        }
    }

    /// Waits until moto itself answers on the port: an open port alone could be another
    /// listener that took it first.
    fn wait_until_ready(&self) -> Result<(), String> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let answered = self
                .try_request("GET", "/moto-api/data.json")
                .is_some_and(|response| response.starts_with("HTTP/1.1 200"));
            let exited = {
                let mut guard = self
                    .guard
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                match guard.as_mut() {
                    Some((child, _)) => matches!(child.try_wait(), Ok(Some(_))),
                    None => true,
                }
            };
            if answered && !exited {
                return Ok(());
            }
            if exited || Instant::now() > deadline {
                return Err(format!(
                    "the moto emulator did not start on 127.0.0.1:{} within {:?}. \
                     Run `make venv` to install the pinned moto[server] into .venv, or set \
                     GEOBATCH_MOTO_SERVER to a moto_server executable. Integration tests \
                     need it and do not skip without it.",
                    self.port, STARTUP_TIMEOUT
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn request(&self, method: &str, path: &str) -> String {
        self.try_request(method, path)
            .unwrap_or_else(|| panic!("cannot reach moto on port {}", self.port))
    }

    /// One HTTP/1.1 exchange, or `None` when nothing accepts or answers on the port.
    fn try_request(&self, method: &str, path: &str) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .ok()?;
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        );
        stream.write_all(request.as_bytes()).ok()?;
        let mut response = String::new();
        let _read = stream.read_to_string(&mut response);
        Some(response)
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A name no other test in this run uses, for buckets, queues and services (lowercase,
/// S3-safe).
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// Where the moto server executable is expected.
pub fn moto_server_path() -> PathBuf {
    if let Some(path) = std::env::var_os("GEOBATCH_MOTO_SERVER") {
        return PathBuf::from(path);
    }
    workspace_root().join(".venv/bin/moto_server")
}

/// The workspace root, for tests that read shared data or the repo's sample files.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0")
        .unwrap_or_else(|err| panic!("cannot bind a loopback port: {err}"));
    listener
        .local_addr()
        .unwrap_or_else(|err| panic!("bound socket has no address: {err}"))
        .port()
}
