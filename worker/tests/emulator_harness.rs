//! The emulator harness itself: tests rely on it starting moto, isolating names and
//! reaching it through the standard SDK configuration.

use geobatch_common::testing::{Emulator, unique_name};

/// A queue created through the SDK is visible through the same endpoint, proving that the
/// harness's configuration reaches the emulator over HTTP.
#[tokio::test]
async fn sdk_clients_reach_the_shared_emulator() {
    let emulator = Emulator::shared();
    let config = emulator.sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let name = unique_name("harness");
    let created = sqs
        .create_queue()
        .queue_name(&name)
        .send()
        .await
        .expect("create queue");
    let url = created.queue_url().expect("queue url").to_owned();
    let listed = sqs
        .list_queues()
        .queue_name_prefix(&name)
        .send()
        .await
        .expect("list queues");
    assert_eq!(listed.queue_urls(), [url]);
}

/// A reset on a private emulator removes what tests created, so tests that own one start
/// clean.
#[tokio::test]
async fn reset_clears_a_private_emulator() {
    let emulator = Emulator::start();
    let config = emulator.sdk_config().await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    );
    s3.create_bucket()
        .bucket("reset-me")
        .send()
        .await
        .expect("create bucket");
    emulator.reset();
    let buckets = s3.list_buckets().send().await.expect("list buckets");
    assert!(buckets.buckets().is_empty(), "reset left {buckets:?}");
}

/// A port that another listener holds is not taken for a running emulator: moto cannot bind
/// it and exits, and the harness says so instead of handing tests someone else's server.
#[test]
#[should_panic(expected = "did not start")]
fn a_port_held_by_another_listener_is_not_mistaken_for_the_emulator() {
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let port = squatter.local_addr().expect("bound address").port();
    let _emulator = Emulator::start_on(port);
}
