//! The AWS endpoint going away: the running service holds capacity (makes no call on data
//! it does not have), stays up, counts the errors, and recovers when the endpoint returns.

mod support;

use std::time::{Duration, Instant};

use geobatch_common::testing::{Emulator, unique_name};
use geobatch_controller::actuate::{Actuator, AwsActuator};
use geobatch_controller::aws::{ApiErrorKind, AwsClients};
use geobatch_controller::decision_log::DecisionLog;
use geobatch_controller::observe::{AwsObserver, Observer};
use geobatch_controller::plan::Action;
use geobatch_controller::service;
use support::{Captured, Fleet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn http_get(port: u16, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the controller's listener");
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    response
}

async fn wait_for_service_desired(fleet: &Fleet, desired: i32, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let state = fleet.state().await;
        if state.service_desired == desired {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "service never reached {desired}: {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn emulator_outage_holds_capacity_and_the_loop_recovers() {
    let emulator = Emulator::start();
    let name = unique_name("outage");
    let sdk = emulator.sdk_config().await;
    let clients = AwsClients::new(&sdk, Duration::from_secs(2));
    // The fixture waits longer: a freshly started moto loads each service on first use.
    let fixture = AwsClients::new(&sdk, Duration::from_secs(60));
    let fleet = Fleet::create_with(fixture.clone(), &name, 0, 0).await;
    let config = fleet
        .config(|p| p.require_empty_receives = false)
        .validate()
        .expect("valid");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let log = Captured::default();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(service::run(
        config,
        clients.clone(),
        false,
        listener,
        DecisionLog::to_writer(log.clone()),
        async move {
            let _sender_gone = stopped.await;
        },
    ));

    fleet.send(3).await;
    wait_for_service_desired(&fleet, 3, Duration::from_secs(10)).await;
    let records_before = log.records().len();

    emulator.stop();
    // Wait until the loop has seen the outage: a failed poll takes up to an API timeout.
    let deadline = Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        let metrics = http_get(port, "/metrics").await;
        let saw_outage = metrics.lines().any(|l| {
            l.starts_with("geobatch_controller_decisions_total") && l.contains("direction=\"hold\"")
        });
        if saw_outage {
            break metrics;
        }
        assert!(
            Instant::now() < deadline,
            "no hold decision during the outage: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // A refused connection is `unavailable`; a call caught mid-way when moto went is a
    // `timeout`: both transient, so the loop backs off.
    assert!(
        metrics.lines().any(|l| {
            l.starts_with("geobatch_controller_api_errors_total{call=\"GetQueueAttributes\"")
                && (l.contains("kind=\"unavailable\"") || l.contains("kind=\"timeout\""))
        }),
        "{metrics}"
    );
    // Several more polls (with back-off) while the endpoint stays away.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!running.is_finished(), "the loop ended when AWS went away");
    assert_eq!(
        log.records().len(),
        records_before,
        "no call may be made on data the controller does not have"
    );
    let health = http_get(port, "/healthz").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");

    // The endpoint comes back (moto restarts empty, so the fleet is recreated as AWS would
    // have kept it) and the loop acts on what it sees again.
    let _back = Emulator::start_on(emulator.port());
    let fleet = Fleet::create_with(fixture, &name, 3, 3).await;
    fleet.send(5).await;
    wait_for_service_desired(&fleet, 5, Duration::from_secs(15)).await;
    assert_eq!(fleet.state().await.group_desired, 5);

    let _ = stop.send(());
    let result = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("stops on the shutdown signal")
        .expect("loop task did not panic");
    assert!(result.is_ok(), "{result:?}");
}

/// Issue 12 (the controller's `ApiError` kind): what the emulator really answers is sorted
/// into kinds: a queue, cluster or service that does not exist is `not_found`, which the
/// error policy does not back off on.
#[tokio::test]
async fn emulator_errors_carry_their_kind() {
    let emulator = Emulator::shared();
    let sdk = emulator.sdk_config().await;
    let clients = AwsClients::new(&sdk, Duration::from_secs(60));
    let fleet = Fleet::create_with(clients.clone(), &unique_name("kinds"), 0, 0).await;
    let mut pool = fleet.pool(|_| {});
    pool.queue_url = format!("{}-gone", fleet.queue_url);
    pool.cluster = format!("{}-gone", fleet.cluster);
    let mut observer = AwsObserver::new(clients.clone(), Duration::from_secs(60));

    let snapshot = observer.observe(&pool).await;

    let kind_of = |call: &str| {
        snapshot
            .errors
            .iter()
            .find(|e| e.call == call)
            .map(|e| e.kind)
    };
    assert_eq!(
        kind_of("GetQueueAttributes"),
        Some(ApiErrorKind::NotFound),
        "{:?}",
        snapshot.errors
    );
    assert_eq!(
        kind_of("DescribeServices"),
        Some(ApiErrorKind::NotFound),
        "{:?}",
        snapshot.errors
    );

    let mut actuator = AwsActuator::new(clients);
    let refused = actuator
        .apply(&Action::UpdateService {
            cluster: pool.cluster.clone(),
            service: pool.service.clone(),
            from: 0,
            desired_count: 1,
        })
        .await
        .expect_err("no such cluster");
    assert_eq!(refused.kind, ApiErrorKind::NotFound, "{refused}");
    assert!(!refused.kind.is_transient());
}
