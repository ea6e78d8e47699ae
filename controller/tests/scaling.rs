//! The control loop against the emulator: what it does to a real (emulated) ECS service and
//! Auto Scaling Group as the queue fills and drains.

mod support;

use std::time::Duration;

use geobatch_common::testing::Emulator;
use geobatch_controller::actuate::{Actuator, AwsActuator, DryRun};
use geobatch_controller::config::Pool;
use geobatch_controller::control::PoolLoop;
use geobatch_controller::decision_log::DecisionLog;
use geobatch_controller::metrics::Metrics;
use geobatch_controller::observe::{AwsObserver, Observer};
use geobatch_controller::policy::Direction;
use support::{Captured, Fleet};

fn controller<A: Actuator>(
    fleet: &Fleet,
    pool: Pool,
    actuator: A,
) -> (PoolLoop<AwsObserver, A>, Captured) {
    let captured = Captured::default();
    let observer = AwsObserver::new(fleet.clients.clone(), Duration::from_millis(100));
    let pool_loop = PoolLoop::new(
        pool,
        observer,
        actuator,
        DecisionLog::to_writer(captured.clone()),
        Metrics::default(),
    );
    (pool_loop, captured)
}

fn live(fleet: &Fleet, pool: Pool) -> (PoolLoop<AwsObserver, AwsActuator>, Captured) {
    controller(fleet, pool, AwsActuator::new(fleet.clients.clone()))
}

/// A backlog raises the service's desired count and the group's desired capacity in one
/// poll, sized by messages per task and tasks per instance, and logs why.
#[tokio::test]
async fn backlog_scales_service_and_group_out() {
    let fleet = Fleet::create(Emulator::shared(), 0, 0).await;
    fleet.send(5).await;
    let pool = fleet.pool(|p| {
        p.messages_per_task = Some(2);
        p.tasks_per_instance = 2;
    });
    let (mut controller, log) = live(&fleet, pool);

    let tick = controller.tick().await;

    assert_eq!(tick.decision.direction, Direction::Out);
    let state = fleet.state().await;
    assert_eq!((state.service_desired, state.group_desired), (3, 2));
    let records = log.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["observation"]["queue"]["visible"], 5);
    assert_eq!(records[0]["desired_tasks"], 3);
    let reason = records[0]["reason"].as_str().expect("reason text");
    assert!(reason.contains("5 messages"), "{reason}");

    // A second poll with the same backlog makes no call.
    let tick = controller.tick().await;
    assert!(tick.calls.is_empty(), "{:?}", tick.calls);
    assert_eq!(log.records().len(), 1);
}

/// With workers reporting empty receives, a drained queue goes to zero tasks only once it
/// has been empty for the idle window; the idle instances then drain and go.
#[tokio::test]
async fn drain_scales_to_zero_only_after_the_idle_window() {
    let fleet = Fleet::create(Emulator::shared(), 2, 2).await;
    fleet.put_empty_receives(4.0).await;
    let pool = fleet.pool(|p| p.idle_window_secs = Some(1.5));
    let (mut controller, _log) = live(&fleet, pool);

    let start = std::time::Instant::now();
    controller.tick().await;
    let mut reached_zero_at = None;
    while start.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let tick = controller.tick().await;
        if tick.decision.desired_tasks == 0 {
            reached_zero_at = Some(start.elapsed());
            break;
        }
        assert_eq!(
            fleet.state().await.service_desired,
            1,
            "one task stays during the window"
        );
    }
    let reached = reached_zero_at.expect("scaled to zero within 10 s");
    assert!(
        reached >= Duration::from_millis(1500),
        "zero after {reached:?}, inside the window"
    );
    assert_eq!(fleet.state().await.service_desired, 0);

    // Idle instances: drained on one poll, terminated on a later one.
    for _ in 0..5 {
        controller.tick().await;
    }
    let state = fleet.state().await;
    assert_eq!(state.group_desired, 0, "{state:?}");
    assert!(state.instances.is_empty(), "{state:?}");
}

/// Without CloudWatch showing empty receives, a running task is not scaled away even after
/// the idle window: the SQS view alone could be lagging.
#[tokio::test]
async fn running_task_is_kept_until_cloudwatch_shows_empty_receives() {
    let fleet = Fleet::create(Emulator::shared(), 1, 1).await;
    let pool = fleet.pool(|p| p.idle_window_secs = Some(0.2));
    let (mut controller, _log) = live(&fleet, pool);
    for _ in 0..5 {
        let tick = controller.tick().await;
        assert_eq!(tick.decision.desired_tasks, 1, "{:?}", tick.decision);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert_eq!(fleet.state().await.service_desired, 1);

    fleet.put_empty_receives(2.0).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let tick = controller.tick().await;
    assert_eq!(tick.decision.desired_tasks, 0, "{:?}", tick.decision);
    assert_eq!(fleet.state().await.service_desired, 0);
}

/// A message being processed (in flight, nothing visible) keeps a task and its instance
/// however long it takes; once it is deleted the pool goes to zero.
#[tokio::test]
async fn in_flight_message_blocks_scale_to_zero() {
    let fleet = Fleet::create(Emulator::shared(), 1, 1).await;
    fleet.put_empty_receives(3.0).await;
    fleet.send(1).await;
    let receipts = fleet.receive(1).await;
    assert_eq!(receipts.len(), 1);
    let pool = fleet.pool(|p| p.idle_window_secs = Some(0.3));
    let (mut controller, _log) = live(&fleet, pool);

    for _ in 0..8 {
        let tick = controller.tick().await;
        assert_eq!(
            tick.snapshot.observation.queue.map(|q| q.in_flight),
            Some(1)
        );
        assert_eq!(tick.decision.desired_tasks, 1);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let state = fleet.state().await;
    assert_eq!((state.service_desired, state.group_desired), (1, 1));

    fleet.delete(&receipts).await;
    let mut ticks = 0;
    while fleet.state().await.service_desired > 0 {
        assert!(
            ticks < 30,
            "never scaled to zero after the message was deleted"
        );
        controller.tick().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        ticks += 1;
    }
}

/// Scale-in removes only instances that run no task: drains them first, terminates them
/// with a decrement on a later poll, and never lowers desired capacity directly. The busy
/// instance stays until its task ends.
#[tokio::test]
async fn only_idle_instances_are_terminated() {
    let fleet = Fleet::create(Emulator::shared(), 0, 3).await;
    let busy = fleet.group_instances().await[1].0.clone();
    let task = fleet.start_task_on(&busy).await;
    let pool = fleet.pool(|p| p.require_empty_receives = false);
    let (mut controller, log) = live(&fleet, pool);

    let first = controller.tick().await;
    let drains: Vec<_> = first
        .calls
        .iter()
        .map(|c| serde_json::to_value(c).expect("json"))
        .collect();
    assert_eq!(drains.len(), 2, "{drains:?}");
    assert!(drains.iter().all(|d| d["call"] == "DrainContainerInstance"));
    assert!(drains.iter().all(|d| d["instance_id"] != busy.as_str()));
    let state = fleet.state().await;
    assert_eq!(
        state.group_desired, 3,
        "desired capacity is never lowered directly"
    );

    controller.tick().await;
    let state = fleet.state().await;
    assert_eq!(state.group_desired, 1, "{state:?}");
    assert_eq!(state.instances.len(), 1);
    assert_eq!(state.instances[0].0, busy);
    assert_eq!(
        state.instances[0].3, 1,
        "the busy instance still runs its task"
    );

    for _ in 0..3 {
        let tick = controller.tick().await;
        assert!(
            tick.calls.is_empty(),
            "nothing to do while the last instance is busy"
        );
    }
    assert_eq!(fleet.state().await.group_desired, 1);

    fleet.stop_task(&task).await;
    controller.tick().await;
    controller.tick().await;
    let state = fleet.state().await;
    assert_eq!(state.group_desired, 0, "{state:?}");
    assert!(state.instances.is_empty());
    let terminated: Vec<String> = log
        .records()
        .iter()
        .flat_map(|r| r["calls"].as_array().cloned().unwrap_or_default())
        .filter(|c| c["call"] == "TerminateInstance")
        .map(|c| c["instance_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(terminated.len(), 3);
    assert_eq!(terminated.last(), Some(&busy), "the busy one went last");
}

/// Issue 12, class 9: the observer reads the tasks ECS is stopping (`ListTasks` with
/// desired status STOPPED, then `DescribeTasks`) on every poll. moto has no stop timeout:
/// `StopTask` moves a task straight to STOPPED, so here a stopped task must leave its
/// instance idle and the observation complete; a task still inside its stop timeout (which
/// moto cannot hold) is covered by the unit tests of `observe` and `plan`.
#[tokio::test]
async fn stopped_tasks_are_observed_and_free_their_instance() {
    let fleet = Fleet::create(Emulator::shared(), 0, 1).await;
    let instance = fleet.group_instances().await[0].0.clone();
    let task = fleet.start_task_on(&instance).await;
    let mut observer = AwsObserver::new(fleet.clients.clone(), Duration::from_secs(60));
    let pool = fleet.pool(|p| p.require_empty_receives = false);

    let busy = observer.observe(&pool).await;
    assert!(busy.errors.is_empty(), "{:?}", busy.errors);
    let hosts = busy.hosts.expect("hosts observed");
    assert!(!hosts[0].idle(), "{hosts:?}");

    fleet.stop_task(&task).await;
    let stopped = observer.observe(&pool).await;
    assert!(stopped.errors.is_empty(), "{:?}", stopped.errors);
    let hosts = stopped.hosts.expect("hosts observed");
    let container = hosts[0].container.as_ref().expect("registered");
    assert_eq!(
        (container.running_tasks, container.stopping_tasks),
        (0, 0),
        "{hosts:?}"
    );
    assert!(hosts[0].idle());
}

/// Work that returns while idle instances are draining takes a drained instance back
/// instead of launching a new one, and the one still not needed goes.
#[tokio::test]
async fn drained_instance_is_taken_back_when_work_returns() {
    let fleet = Fleet::create(Emulator::shared(), 0, 2).await;
    let pool = fleet.pool(|p| p.require_empty_receives = false);
    let (mut controller, _log) = live(&fleet, pool);
    controller.tick().await;
    let drained = fleet.container_instances().await;
    assert!(
        drained.iter().all(|(_, _, status, _)| status == "DRAINING"),
        "{drained:?}"
    );

    fleet.send(1).await;
    controller.tick().await;
    let state = fleet.state().await;
    assert_eq!(state.service_desired, 1);
    assert_eq!(state.group_desired, 1, "{state:?}");
    assert_eq!(state.instances.len(), 1, "{state:?}");
    assert_eq!(state.instances[0].2, "ACTIVE", "{state:?}");
    assert!(
        drained.iter().any(|(id, ..)| *id == state.instances[0].0),
        "no new instance"
    );
}

/// Dry-run observes and decides as live, records `would` calls, and leaves every resource
/// exactly as it was: service, group, instances and their container states.
#[tokio::test]
async fn dry_run_leaves_every_resource_unchanged() {
    let fleet = Fleet::create(Emulator::shared(), 0, 2).await;
    fleet.send(4).await;
    let pool = fleet.pool(|p| p.require_empty_receives = false);
    let before = fleet.state().await;
    let (mut controller, log) = controller(&fleet, pool, DryRun);

    let tick = controller.tick().await;
    assert_eq!(tick.decision.desired_tasks, 4);
    assert!(!tick.calls.is_empty());
    controller.tick().await;

    // Drain the queue: the dry-run plan now drains idle instances and scales in.
    let receipts = fleet.receive(10).await;
    fleet.delete(&receipts).await;
    for _ in 0..3 {
        controller.tick().await;
    }

    assert_eq!(fleet.state().await, before);
    let records = log.records();
    assert_eq!(
        records.len(),
        2,
        "one record per distinct plan: {records:#?}"
    );
    assert!(records.iter().all(|r| r["dry_run"] == true));
    assert_eq!(records[0]["calls"][0]["call"], "SetDesiredCapacity");
    assert_eq!(records[1]["calls"][0]["call"], "DrainContainerInstance");
}
