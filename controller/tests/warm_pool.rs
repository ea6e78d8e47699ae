//! The warm pool and the group's instance states as the controller observes them, against
//! the emulator (moto stores a warm pool's configuration but launches no warm instances).

mod support;

use std::time::Duration;

use geobatch_common::testing::Emulator;
use geobatch_controller::actuate::DryRun;
use geobatch_controller::control::PoolLoop;
use geobatch_controller::decision_log::DecisionLog;
use geobatch_controller::metrics::Metrics;
use geobatch_controller::observe::{AwsObserver, Observer};
use geobatch_controller::policy::WarmPoolSize;
use prometheus_client::registry::Registry;
use support::{Captured, Fleet};

/// A group with a warm pool: its size reaches the observation, the decision log and the
/// metrics, and the group's in-service instances are counted apart from warm ones.
#[tokio::test]
async fn the_warm_pool_is_observed_logged_and_exported() {
    let fleet = Fleet::create(Emulator::shared(), 1, 2).await;
    fleet
        .clients
        .autoscaling
        .put_warm_pool()
        .auto_scaling_group_name(&fleet.group)
        .min_size(1)
        .max_group_prepared_capacity(3)
        .pool_state(aws_sdk_autoscaling::types::WarmPoolState::Stopped)
        .send()
        .await
        .expect("put warm pool");
    let pool = fleet.pool(|_| {});
    let mut observer = AwsObserver::new(fleet.clients.clone(), Duration::from_millis(100));
    let snapshot = observer.observe(&pool).await;
    assert!(snapshot.errors.is_empty(), "{:?}", snapshot.errors);
    assert_eq!(
        snapshot.observation.warm_pool,
        Some(WarmPoolSize {
            min_size: 1,
            max_group_prepared_capacity: Some(3),
        })
    );
    let group = snapshot.observation.instances.expect("group observed");
    assert_eq!((group.desired, group.in_service), (2, 2));
    assert_eq!((group.pending, group.interrupted, group.warm), (0, 0, 0));

    let captured = Captured::default();
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let mut controller = PoolLoop::new(
        pool,
        observer,
        DryRun,
        DecisionLog::to_writer(captured.clone()),
        metrics,
    );
    controller.tick().await;
    let records = captured.records();
    let observation = &records.last().expect("a decision record")["observation"];
    assert_eq!(observation["warm_pool"]["min_size"], 1);
    assert_eq!(observation["warm_pool"]["max_group_prepared_capacity"], 3);
    assert_eq!(observation["instances"]["warm"], 0);
    assert_eq!(observation["instances"]["interrupted"], 0);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode metrics");
    for gauge in [
        "warm_instances",
        "pending_instances",
        "interrupted_instances",
    ] {
        assert!(
            text.contains(&format!("geobatch_controller_{gauge}{{pool=")),
            "{gauge} missing from\n{text}"
        );
    }
}

/// Without a warm pool the observation says so and the read is not an error.
#[tokio::test]
async fn a_group_without_a_warm_pool_observes_none() {
    let fleet = Fleet::create(Emulator::shared(), 0, 0).await;
    let pool = fleet.pool(|_| {});
    let mut observer = AwsObserver::new(fleet.clients.clone(), Duration::from_millis(100));
    let snapshot = observer.observe(&pool).await;
    assert!(snapshot.errors.is_empty(), "{:?}", snapshot.errors);
    assert_eq!(snapshot.observation.warm_pool, None);
}

/// Issue 11: a managed pool's warm pool is resized with `PutWarmPool`, and the emulator
/// stores what the controller set (no arrivals learned yet: one stopped instance).
#[tokio::test]
async fn a_managed_warm_pool_is_resized_through_put_warm_pool() {
    let fleet = Fleet::create(Emulator::shared(), 1, 1).await;
    fleet
        .clients
        .autoscaling
        .put_warm_pool()
        .auto_scaling_group_name(&fleet.group)
        .min_size(2)
        .max_group_prepared_capacity(4)
        .pool_state(aws_sdk_autoscaling::types::WarmPoolState::Stopped)
        .send()
        .await
        .expect("put warm pool");
    let pool = fleet.pool(|p| p.manage_warm_pool = true);
    let observer = AwsObserver::new(fleet.clients.clone(), Duration::from_millis(100));
    let mut controller = PoolLoop::new(
        pool.clone(),
        observer,
        geobatch_controller::actuate::AwsActuator::new(fleet.clients.clone()),
        DecisionLog::discard(),
        Metrics::default(),
    );
    let tick = controller.tick().await;
    assert!(tick.failed_calls.is_empty(), "{:?}", tick.failed_calls);
    assert!(
        tick.calls.iter().any(|c| c.call() == "PutWarmPool"),
        "{:?}",
        tick.calls
    );
    let mut observer = AwsObserver::new(fleet.clients.clone(), Duration::from_millis(100));
    let after = observer.observe(&pool).await;
    assert_eq!(
        after.observation.warm_pool,
        Some(WarmPoolSize {
            min_size: 1,
            max_group_prepared_capacity: Some(1),
        })
    );
    // Already the size: no call on the next poll.
    let again = controller.tick().await;
    assert!(
        !again.calls.iter().any(|c| c.call() == "PutWarmPool"),
        "{:?}",
        again.calls
    );
}
