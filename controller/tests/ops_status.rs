//! `status` against a fleet in the emulator: every figure is the queue's, the service's and
//! the group's as AWS reports them, and the controller's latest decision comes from the
//! running controller's `/decisions`.

mod support;

use std::time::Duration;

use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use aws_sdk_sqs::types::QueueAttributeName;
use geobatch_common::testing::{Emulator, unique_name};
use geobatch_controller::decision_log::DecisionLog;
use geobatch_controller::ops::report::OutputFormat;
use geobatch_controller::ops::setup::OpsClients;
use geobatch_controller::ops::status::{self, StatusArgs};
use geobatch_controller::service;
use support::{Captured, Fleet};

/// Gives the fleet's queue a dead-letter queue holding `n` messages; returns its URL.
async fn dead_letter_queue(fleet: &Fleet, n: usize) -> String {
    let sqs = &fleet.clients.sqs;
    let dlq = sqs
        .create_queue()
        .queue_name(unique_name("dlq"))
        .send()
        .await
        .expect("create dlq")
        .queue_url
        .expect("dlq url");
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&dlq)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("dlq attributes")
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .expect("dlq arn");
    sqs.set_queue_attributes()
        .queue_url(&fleet.queue_url)
        .attributes(
            QueueAttributeName::RedrivePolicy,
            serde_json::json!({"deadLetterTargetArn": arn, "maxReceiveCount": "5"}).to_string(),
        )
        .send()
        .await
        .expect("set redrive policy");
    for i in 0..n {
        sqs.send_message()
            .queue_url(&dlq)
            .message_body(format!("dead {i}"))
            .send()
            .await
            .expect("send to dlq");
    }
    dlq
}

fn args(config: std::path::PathBuf, controller_url: &str) -> StatusArgs {
    StatusArgs {
        config,
        pool: None,
        controller_url: controller_url.to_owned(),
        watch: None,
        format: Some(OutputFormat::Json),
    }
}

#[tokio::test]
async fn status_fields_match_the_queue_the_service_and_the_group() {
    let emulator = Emulator::shared();
    let fleet = Fleet::create(emulator, 3, 2).await;
    dead_letter_queue(&fleet, 2).await;
    fleet.send(6).await;
    let held = fleet.receive(2).await;
    assert_eq!(held.len(), 2);
    fleet
        .clients
        .sqs
        .send_message()
        .queue_url(&fleet.queue_url)
        .message_body("later")
        .delay_seconds(600)
        .send()
        .await
        .expect("send delayed");
    let (instance, _) = fleet.group_instances().await.remove(0);
    fleet.start_task_on(&instance).await;
    // What SQS publishes as messages are deleted: 10 completions in the last minutes.
    fleet
        .clients
        .cloudwatch
        .put_metric_data()
        .namespace("AWS/SQS")
        .metric_data(
            MetricDatum::builder()
                .metric_name("NumberOfMessagesDeleted")
                .dimensions(
                    Dimension::builder()
                        .name("QueueName")
                        .value(&fleet.queue_name)
                        .build(),
                )
                .value(10.0)
                .unit(StandardUnit::Count)
                .build(),
        )
        .send()
        .await
        .expect("put metric");

    let dir = tempfile::tempdir().expect("tempdir");
    let config_path = dir.path().join("controller.toml");
    let file = fleet.config(|p| p.require_empty_receives = false);
    std::fs::write(&config_path, toml::to_string(&file).expect("toml")).expect("write config");

    // A dry-run controller, so its decisions change nothing the status is compared with.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let controller = tokio::spawn(service::run(
        file.validate().expect("valid"),
        fleet.clients.clone(),
        true,
        listener,
        DecisionLog::to_writer(Captured::default()),
        async move {
            let _sender_gone = stopped.await;
        },
    ));
    let clients = OpsClients::new(&emulator.sdk_config().await);
    let mut shown = None;
    for _ in 0..50 {
        let status = status::read(&clients, &fleet.pool(|_| {}), &url).await;
        if status.controller.is_some() {
            shown = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let shown = shown.expect("the controller published a decision");
    assert_eq!(
        shown.controller.as_ref().expect("decision")["pool"],
        fleet.queue_name.as_str()
    );
    assert!(
        shown.controller.as_ref().expect("decision")["reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty())
    );

    // The command itself, as a script reads it.
    let mut stdout = Vec::new();
    let status = status::run(&clients, &args(config_path, &url), &mut stdout)
        .await
        .expect("status");
    let json: serde_json::Value = serde_json::from_slice(&stdout).expect("one JSON object");
    assert_eq!(json["pool"], fleet.queue_name.as_str());
    let messages = status.messages.expect("messages");
    assert_eq!(
        (messages.visible, messages.in_flight, messages.delayed),
        (4, 2, 1)
    );
    assert_eq!(json["messages"]["in_flight"], 2);
    assert_eq!(status.dead_lettered, Some(2));
    let tasks = status.tasks.expect("tasks");
    let state = fleet.state().await;
    assert_eq!(i64::from(tasks.desired), i64::from(state.service_desired));
    assert_eq!(tasks.desired, 3);
    let instances = status.instances.expect("instances");
    assert_eq!(i64::from(instances.desired), i64::from(state.group_desired));
    assert_eq!(instances.by_state.get("InService"), Some(&2));
    assert_eq!(instances.busy, 1);
    assert_eq!(
        status.completed_per_minute,
        Some(2.0),
        "10 deletions over 5 minutes"
    );
    assert_eq!(status.rate_source, Some("cloudwatch"));
    assert_eq!(status.eta_secs, Some(7.0 / 2.0 * 60.0));
    assert!(status.errors.is_empty(), "{:?}", status.errors);

    let _ = stop.send(());
    let stopped = tokio::time::timeout(Duration::from_secs(10), controller)
        .await
        .expect("stops");
    assert!(stopped.expect("no panic").is_ok());
}

#[tokio::test]
async fn status_says_what_it_could_not_read_and_exits_partial() {
    let emulator = Emulator::shared();
    let fleet = Fleet::create(emulator, 0, 0).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config_path = dir.path().join("controller.toml");
    std::fs::write(
        &config_path,
        toml::to_string(&fleet.config(|_| {})).expect("toml"),
    )
    .expect("write");
    let clients = OpsClients::new(&emulator.sdk_config().await);
    // No dead-letter queue, and no controller listening on a port nobody has.
    let err = status::run(
        &clients,
        &args(config_path.clone(), "http://127.0.0.1:9"),
        &mut Vec::new(),
    )
    .await
    .expect_err("partial");
    assert_eq!(
        err.exit_status(),
        geobatch_controller::ops::ExitStatus::Partial
    );
    let status = status::read(&clients, &fleet.pool(|_| {}), "http://127.0.0.1:9").await;
    assert!(
        status.errors.iter().any(|e| e.contains("RedrivePolicy")),
        "{:?}",
        status.errors
    );
    assert!(
        status.errors.iter().any(|e| e.contains("--controller-url")),
        "{:?}",
        status.errors
    );
    assert!(status.messages.is_some() && status.tasks.is_some());

    let mut wrong = args(config_path, "none");
    wrong.pool = Some("nope".to_owned());
    let err = status::run(&clients, &wrong, &mut Vec::new())
        .await
        .expect_err("no such pool");
    assert_eq!(
        err.exit_status(),
        geobatch_controller::ops::ExitStatus::NotFound
    );
}
