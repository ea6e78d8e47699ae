//! From a decision to the AWS calls that carry it out, without making them.
//!
//! Pure, like the policy, so dry-run, `decide` and the live loop show and make the same
//! calls. The safety rules live here:
//! - no call when nothing changes, and none at all when an observation is missing;
//! - scale-out raises the group's desired capacity and the service's desired count together
//!   (and takes back instances it had started draining before asking for new ones: only
//!   its own drains, never one the ECS agent made for a Spot interruption notice, which is
//!   not capacity at all; see [`crate::drains`]);
//! - scale-in never lowers the group's desired capacity, which would let Auto Scaling pick
//!   any instance, busy or not. It lowers the service's desired count (ECS keeps tasks with
//!   scale-in protection), drains an instance only when it runs no task, and terminates it,
//!   decrementing the desired capacity, only once a later poll sees it drained and still
//!   idle.

use std::fmt;

use serde::Serialize;

use crate::config::Pool;
use crate::drains::DrainOrigin;
use crate::observe::{Host, PoolSnapshot};
use crate::policy::{Decision, Direction, WarmPoolSize};

/// One mutating AWS call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "call")]
pub enum Action {
    /// ECS `UpdateService` with a new desired count.
    UpdateService {
        /// The cluster.
        cluster: String,
        /// The service.
        service: String,
        /// The desired count now.
        from: u32,
        /// The desired count to set.
        desired_count: u32,
    },
    /// Auto Scaling `SetDesiredCapacity`, only ever upwards.
    SetDesiredCapacity {
        /// The group.
        auto_scaling_group: String,
        /// The desired capacity now.
        from: u32,
        /// The desired capacity to set.
        desired_capacity: u32,
    },
    /// ECS `UpdateContainerInstancesState` to `DRAINING`, so no task lands on an idle
    /// instance that is about to go.
    DrainContainerInstance {
        /// The cluster.
        cluster: String,
        /// The container instance.
        container_instance_arn: String,
        /// The EC2 instance under it.
        instance_id: String,
    },
    /// ECS `UpdateContainerInstancesState` back to `ACTIVE`: capacity is needed again.
    ActivateContainerInstance {
        /// The cluster.
        cluster: String,
        /// The container instance.
        container_instance_arn: String,
        /// The EC2 instance under it.
        instance_id: String,
    },
    /// Auto Scaling `TerminateInstanceInAutoScalingGroup` with
    /// `ShouldDecrementDesiredCapacity=true`, for a drained instance that runs no task.
    TerminateInstance {
        /// The group.
        auto_scaling_group: String,
        /// The instance.
        instance_id: String,
    },
    /// Auto Scaling `PutWarmPool`, resizing the group's warm pool (managed pools only,
    /// [`crate::warm_pool`]).
    PutWarmPool {
        /// The group.
        auto_scaling_group: String,
        /// The pool's size now.
        from: WarmPoolSize,
        /// The size to set.
        to: WarmPoolSize,
    },
}

impl Action {
    /// The API operation, for logs and the per-call error metric.
    pub fn call(&self) -> &'static str {
        match self {
            Action::UpdateService { .. } => "UpdateService",
            Action::SetDesiredCapacity { .. } => "SetDesiredCapacity",
            Action::DrainContainerInstance { .. } | Action::ActivateContainerInstance { .. } => {
                "UpdateContainerInstancesState"
            }
            Action::TerminateInstance { .. } => "TerminateInstanceInAutoScalingGroup",
            Action::PutWarmPool { .. } => "PutWarmPool",
        }
    }

    /// Whether this call must wait for the next poll when `earlier`, a call before it in the
    /// same plan, failed. Calls are otherwise independent: a group that refuses a new
    /// desired capacity (say its MaxSize was lowered) must not keep the service from
    /// scaling onto the instances it has. The one dependency is the drain on scale-in: an
    /// idle instance is surplus only once the service's lower count went through; while the
    /// service keeps its old count, ECS may need that instance to place a task.
    pub fn needs(&self, earlier: &Action) -> bool {
        matches!(
            (self, earlier),
            (
                Action::DrainContainerInstance { .. },
                Action::UpdateService { .. }
            )
        )
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::UpdateService {
                cluster,
                service,
                from,
                desired_count,
            } => write!(
                f,
                "set ECS service {cluster}/{service} desired count {from} -> {desired_count}"
            ),
            Action::SetDesiredCapacity {
                auto_scaling_group,
                from,
                desired_capacity,
            } => write!(
                f,
                "set Auto Scaling Group {auto_scaling_group} desired capacity {from} -> \
                 {desired_capacity}"
            ),
            Action::DrainContainerInstance { instance_id, .. } => {
                write!(
                    f,
                    "set container instance on {instance_id} to DRAINING (idle)"
                )
            }
            Action::ActivateContainerInstance { instance_id, .. } => write!(
                f,
                "set container instance on {instance_id} back to ACTIVE (capacity needed)"
            ),
            Action::TerminateInstance {
                auto_scaling_group,
                instance_id,
            } => write!(
                f,
                "terminate drained idle instance {instance_id} in {auto_scaling_group}, \
                 decrementing desired capacity"
            ),
            Action::PutWarmPool {
                auto_scaling_group,
                from,
                to,
            } => write!(
                f,
                "set warm pool of {auto_scaling_group} to {} (was {})",
                WarmSize(to),
                WarmSize(from)
            ),
        }
    }
}

/// A warm pool's size in a call's description.
struct WarmSize<'a>(&'a WarmPoolSize);

impl fmt::Display for WarmSize<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "min {}, max prepared ", self.0.min_size)?;
        match self.0.max_group_prepared_capacity {
            Some(n) => write!(f, "{n}"),
            None => f.write_str("the group's MaxSize"),
        }
    }
}

/// The calls that carry out `decision` for a pool as `snapshot` saw it, in the order to make
/// them. Each call is made on its own: one that fails stops only the calls that need it
/// ([`Action::needs`]), and the next poll plans again from what it sees. `origin` says whose
/// each drained instance's drain is ([`crate::drains::DrainMemory::origin`]).
pub fn plan(
    pool: &Pool,
    snapshot: &PoolSnapshot,
    decision: &Decision,
    origin: impl Fn(&str) -> DrainOrigin,
) -> Vec<Action> {
    let (Some(service), Some(group)) =
        (snapshot.observation.service, snapshot.observation.instances)
    else {
        return Vec::new();
    };
    if decision.direction == Direction::Hold {
        return Vec::new();
    }
    let hosts = snapshot.hosts.as_deref();
    let mut actions = Vec::new();
    let update_service =
        (decision.desired_tasks != service.desired).then(|| Action::UpdateService {
            cluster: pool.cluster.clone(),
            service: pool.service.clone(),
            from: service.desired,
            desired_count: decision.desired_tasks,
        });

    // Instances the controller drained earlier that are needed again come back first, busy
    // ones before idle ones; the rest of its drained ones are on their way out. A drain
    // someone else made is not capacity: a recent one (a Spot notice, most likely: the
    // group is replacing the instance outside its desired capacity) is left alone; one that
    // has lasted longer than any notice is within the desired capacity, and may go when
    // idle, but is never taken back.
    let drained = |wanted: DrainOrigin| -> Vec<&Host> {
        hosts
            .unwrap_or_default()
            .iter()
            .filter(|h| h.in_service() && h.draining() && origin(&h.instance_id) == wanted)
            .collect()
    };
    let mut draining = drained(DrainOrigin::Own);
    let settled = drained(DrainOrigin::Settled);
    draining.sort_by_key(|h| h.idle());
    let usable = group
        .desired
        .saturating_sub(count(draining.len() + settled.len()));
    let taken_back =
        (decision.desired_instances.saturating_sub(usable) as usize).min(draining.len());
    let (back, leaving) = draining.split_at(taken_back);
    for host in back {
        if let Some(container) = &host.container {
            actions.push(Action::ActivateContainerInstance {
                cluster: pool.cluster.clone(),
                container_instance_arn: container.arn.clone(),
                instance_id: host.instance_id.clone(),
            });
        }
    }
    // Drains someone else made that stay are inside the desired capacity but not capacity:
    // the group holds that many more (within its maximum).
    let wanted = decision
        .desired_instances
        .saturating_add(count(settled.len()))
        .min(pool.policy.max_instances.max(decision.desired_instances));
    if decision.desired_instances > usable && wanted > group.desired {
        actions.push(Action::SetDesiredCapacity {
            auto_scaling_group: pool.auto_scaling_group.clone(),
            from: group.desired,
            desired_capacity: wanted,
        });
    }

    // On scale-in the service goes first, so ECS stops unprotected tasks; idle instances
    // follow.
    actions.extend(update_service);
    if decision.desired_instances < group.desired
        && let Some(hosts) = hosts
    {
        let surplus = (group.desired - decision.desired_instances) as usize;
        let (idle_leaving, busy_leaving): (Vec<&Host>, Vec<&Host>) =
            leaving.iter().chain(&settled).partition(|h| h.idle());
        for host in idle_leaving.iter().take(surplus) {
            actions.push(Action::TerminateInstance {
                auto_scaling_group: pool.auto_scaling_group.clone(),
                instance_id: host.instance_id.clone(),
            });
        }
        // Drained instances still finishing a task count as going: no extra drain for them.
        let going = idle_leaving.len().min(surplus) + busy_leaving.len();
        for host in hosts
            .iter()
            .filter(|h| h.in_service() && !h.draining() && h.idle())
            .take(surplus.saturating_sub(going))
        {
            if let Some(container) = &host.container {
                actions.push(Action::DrainContainerInstance {
                    cluster: pool.cluster.clone(),
                    container_instance_arn: container.arn.clone(),
                    instance_id: host.instance_id.clone(),
                });
            }
        }
    }
    actions
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::observe::ContainerInstance;
    use crate::policy::{InstanceGroup, Observation, PoolPolicy, QueueDepth, Reason, ServiceTasks};
    use std::time::Duration;

    pub(crate) fn pool() -> Pool {
        Pool {
            name: "geo".into(),
            queue_url: "http://127.0.0.1/1/q".into(),
            queue_name: "q".into(),
            cluster: "c".into(),
            service: "s".into(),
            auto_scaling_group: "g".into(),
            poll_interval: Duration::from_secs(1),
            manage_warm_pool: false,
            policy: PoolPolicy::default(),
        }
    }

    pub(crate) fn host(id: &str, status: &str, running: u32) -> Host {
        Host {
            instance_id: id.into(),
            lifecycle_state: "InService".into(),
            container: Some(ContainerInstance {
                arn: format!("arn:{id}"),
                status: status.into(),
                running_tasks: running,
                pending_tasks: 0,
                stopping_tasks: 0,
            }),
        }
    }

    pub(crate) fn snapshot(tasks: u32, instances: u32, hosts: Vec<Host>) -> PoolSnapshot {
        PoolSnapshot {
            observation: Observation {
                queue: Some(QueueDepth::default()),
                service: Some(ServiceTasks {
                    desired: tasks,
                    running: tasks,
                    pending: 0,
                }),
                instances: Some(InstanceGroup {
                    desired: instances,
                    in_service: instances,
                    ..InstanceGroup::default()
                }),
                latest_empty_receives: None,
                warm_pool: None,
            },
            hosts: Some(hosts),
            cloudwatch_visible: None,
            errors: Vec::new(),
        }
    }

    fn decision(tasks: u32, instances: u32, direction: Direction) -> Decision {
        Decision {
            desired_tasks: tasks,
            desired_instances: instances,
            direction,
            reason: Reason::Drained { idle_secs: 1.0 },
        }
    }

    /// Every drain is the controller's own, as in a loop that made them.
    fn ours(_: &str) -> DrainOrigin {
        DrainOrigin::Own
    }

    fn calls(actions: &[Action]) -> Vec<String> {
        actions.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn nothing_changes_no_call() {
        let snap = snapshot(
            2,
            2,
            vec![host("i-1", "ACTIVE", 1), host("i-2", "ACTIVE", 1)],
        );
        assert!(plan(&pool(), &snap, &decision(2, 2, Direction::Steady), ours).is_empty());
    }

    #[test]
    fn hold_makes_no_call_even_if_numbers_differ() {
        let snap = snapshot(2, 2, vec![]);
        assert!(plan(&pool(), &snap, &decision(0, 0, Direction::Hold), ours).is_empty());
    }

    #[test]
    fn scale_out_sets_group_then_service() {
        let snap = snapshot(0, 0, vec![]);
        let actions = plan(&pool(), &snap, &decision(3, 3, Direction::Out), ours);
        assert_eq!(
            calls(&actions),
            [
                "set Auto Scaling Group g desired capacity 0 -> 3",
                "set ECS service c/s desired count 0 -> 3",
            ]
        );
    }

    #[test]
    fn scale_in_never_lowers_desired_capacity_and_drains_only_idle_instances() {
        let snap = snapshot(
            3,
            3,
            vec![
                host("i-1", "ACTIVE", 1),
                host("i-2", "ACTIVE", 0),
                host("i-3", "ACTIVE", 1),
            ],
        );
        let actions = plan(&pool(), &snap, &decision(0, 0, Direction::In), ours);
        assert_eq!(
            calls(&actions),
            [
                "set ECS service c/s desired count 3 -> 0",
                "set container instance on i-2 to DRAINING (idle)",
            ]
        );
        assert!(
            !actions
                .iter()
                .any(|a| matches!(a, Action::SetDesiredCapacity { .. }))
        );
    }

    #[test]
    fn drained_idle_instances_are_terminated_busy_ones_wait() {
        let snap = snapshot(
            0,
            3,
            vec![
                host("i-1", "DRAINING", 0),
                host("i-2", "DRAINING", 1),
                host("i-3", "ACTIVE", 0),
            ],
        );
        let actions = plan(&pool(), &snap, &decision(0, 1, Direction::In), ours);
        assert_eq!(
            calls(&actions),
            ["terminate drained idle instance i-1 in g, decrementing desired capacity"]
        );
    }

    /// Issue 12, class 9: a worker finishing its file inside the stop timeout keeps its
    /// instance: neither drained nor, once drained, terminated.
    #[test]
    fn an_instance_whose_task_is_stopping_is_neither_drained_nor_terminated() {
        let stopping = |id, status| {
            let mut host = host(id, status, 0);
            if let Some(container) = host.container.as_mut() {
                container.stopping_tasks = 1;
            }
            host
        };
        let snap = snapshot(
            0,
            2,
            vec![stopping("i-1", "ACTIVE"), stopping("i-2", "DRAINING")],
        );
        let actions = plan(&pool(), &snap, &decision(0, 0, Direction::In), ours);
        assert!(actions.is_empty(), "{actions:?}");
    }

    #[test]
    fn unregistered_or_booting_instances_are_left_alone() {
        let mut booting = host("i-1", "ACTIVE", 0);
        booting.lifecycle_state = "Pending".into();
        let unregistered = Host {
            container: None,
            ..host("i-2", "ACTIVE", 0)
        };
        let snap = snapshot(0, 2, vec![booting, unregistered]);
        let actions = plan(&pool(), &snap, &decision(0, 0, Direction::In), ours);
        assert!(actions.is_empty(), "{actions:?}");
    }

    #[test]
    fn without_host_details_only_the_service_scales_in() {
        let mut snap = snapshot(2, 2, vec![]);
        snap.hosts = None;
        let actions = plan(&pool(), &snap, &decision(0, 0, Direction::In), ours);
        assert_eq!(
            calls(&actions),
            ["set ECS service c/s desired count 2 -> 0"]
        );
    }

    #[test]
    fn scale_out_takes_back_drained_instances_first() {
        let snap = snapshot(
            0,
            2,
            vec![host("i-1", "DRAINING", 0), host("i-2", "DRAINING", 0)],
        );
        let actions = plan(&pool(), &snap, &decision(3, 3, Direction::Out), ours);
        assert_eq!(
            calls(&actions),
            [
                "set container instance on i-1 back to ACTIVE (capacity needed)",
                "set container instance on i-2 back to ACTIVE (capacity needed)",
                "set Auto Scaling Group g desired capacity 2 -> 3",
                "set ECS service c/s desired count 0 -> 3",
            ]
        );
    }

    #[test]
    fn an_instance_taken_back_is_not_also_terminated() {
        let snap = snapshot(
            0,
            2,
            vec![host("i-1", "DRAINING", 0), host("i-2", "DRAINING", 0)],
        );
        let actions = plan(&pool(), &snap, &decision(1, 1, Direction::Out), ours);
        assert_eq!(
            calls(&actions),
            [
                "set container instance on i-1 back to ACTIVE (capacity needed)",
                "set ECS service c/s desired count 0 -> 1",
                "terminate drained idle instance i-2 in g, decrementing desired capacity",
            ]
        );
    }

    /// Issue 11: the ECS agent drained i-2 for a Spot notice. It is neither taken back (its
    /// tasks would die with it) nor counted: the group, already replacing it, gets one more.
    #[test]
    fn an_instance_drained_for_a_spot_notice_is_never_taken_back_nor_counted() {
        let snap = snapshot(
            1,
            2,
            vec![host("i-1", "ACTIVE", 1), host("i-2", "DRAINING", 1)],
        );
        let origin = |id: &str| {
            if id == "i-2" {
                DrainOrigin::Foreign
            } else {
                DrainOrigin::Own
            }
        };
        let actions = plan(&pool(), &snap, &decision(3, 3, Direction::Out), origin);
        assert_eq!(
            calls(&actions),
            [
                "set Auto Scaling Group g desired capacity 2 -> 3",
                "set ECS service c/s desired count 1 -> 3",
            ]
        );
        // Nor terminated on scale-in, idle or not: EC2 takes it.
        let idle = snapshot(
            0,
            2,
            vec![host("i-1", "ACTIVE", 0), host("i-2", "DRAINING", 0)],
        );
        let actions = plan(&pool(), &idle, &decision(0, 0, Direction::In), origin);
        assert_eq!(
            calls(&actions),
            ["set container instance on i-1 to DRAINING (idle)"]
        );
    }

    /// After a restart the controller's earlier drains are someone else's; once one has
    /// lasted past any Spot notice it is no interruption: an idle one goes on scale-in,
    /// and it is not counted as capacity, but it is never taken back.
    #[test]
    fn a_drain_older_than_any_notice_may_go_when_idle_but_never_comes_back() {
        let snap = snapshot(
            0,
            3,
            vec![
                host("i-1", "DRAINING", 0),
                host("i-2", "ACTIVE", 0),
                host("i-3", "ACTIVE", 0),
            ],
        );
        let settled = |id: &str| {
            if id == "i-1" {
                DrainOrigin::Settled
            } else {
                DrainOrigin::Own
            }
        };
        let actions = plan(&pool(), &snap, &decision(0, 2, Direction::In), settled);
        assert_eq!(
            calls(&actions),
            ["terminate drained idle instance i-1 in g, decrementing desired capacity"]
        );
        let actions = plan(&pool(), &snap, &decision(3, 3, Direction::Out), settled);
        assert_eq!(
            calls(&actions),
            [
                "set Auto Scaling Group g desired capacity 3 -> 4",
                "set ECS service c/s desired count 0 -> 3",
            ]
        );
    }

    #[test]
    fn no_more_drains_than_the_surplus() {
        let hosts = (1..=4)
            .map(|n| host(&format!("i-{n}"), "ACTIVE", 0))
            .collect();
        let snap = snapshot(2, 4, hosts);
        let actions = plan(&pool(), &snap, &decision(2, 2, Direction::In), ours);
        assert_eq!(actions.len(), 2, "{actions:?}");
        assert!(
            actions
                .iter()
                .all(|a| matches!(a, Action::DrainContainerInstance { .. }))
        );
    }
}
