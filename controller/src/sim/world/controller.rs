//! The world as the geobatch controller sees and changes it: the observations its
//! observer makes of SQS, ECS and the Auto Scaling Group, and the calls its actuator makes,
//! carried out (or refused) as AWS would.

use super::{InstanceState, TaskState, World};
use crate::aws::{ApiError, ApiErrorKind};
use crate::observe::{ContainerInstance, Host, PoolSnapshot, count_lifecycle_states};
use crate::plan::Action;
use crate::policy::{InstanceGroup, Observation, QueueDepth, ServiceTasks};
use crate::sim::autoscaler::CloudWatchPoint;

use super::DecisionRecord;

impl World<'_> {
    /// What the controller's observer reads from SQS, ECS and the Auto Scaling Group now.
    /// CloudWatch is left out: the observer reads it on its own schedule
    /// ([`World::published_cloudwatch`]).
    pub fn snapshot(&self) -> PoolSnapshot {
        let view = self.view();
        let hosts: Vec<Host> = self.live_instances.iter().map(|&i| self.host(i)).collect();
        let states: Vec<&str> = hosts.iter().map(|h| h.lifecycle_state.as_str()).collect();
        PoolSnapshot {
            observation: Observation {
                queue: Some(QueueDepth {
                    visible: u64::from(view.queue.visible),
                    in_flight: u64::from(view.queue.in_flight),
                    delayed: u64::from(view.queue.delayed),
                }),
                service: Some(ServiceTasks {
                    desired: view.desired_tasks,
                    running: view.running_tasks,
                    pending: view.pending_tasks,
                }),
                // Counted from the same listing as the hosts, as the live observer counts.
                instances: Some(InstanceGroup {
                    desired: view.desired_instances,
                    warm: self.warm_pool_instances(),
                    ..count_lifecycle_states(&states)
                }),
                latest_empty_receives: None,
                warm_pool: self.warm_pool_size,
            },
            hosts: Some(hosts),
            cloudwatch_visible: None,
            errors: Vec::new(),
        }
    }

    /// CloudWatch datapoints published by now, oldest first.
    pub fn published_cloudwatch(&self) -> &[CloudWatchPoint] {
        self.view().cloudwatch
    }

    /// One instance as `DescribeAutoScalingGroups` and `DescribeContainerInstances` show it:
    /// `Pending` and unregistered while it boots. An interrupted Spot instance stays
    /// `InService` in the group until EC2 takes it; only its container instance, drained by
    /// the ECS agent, shows the notice (the harder case for the controller).
    fn host(&self, i: usize) -> Host {
        let inst = &self.instances[i];
        let registered = inst.state == InstanceState::InService;
        let count = |wanted: fn(&TaskState) -> bool| {
            inst.tasks
                .iter()
                .filter(|&&t| wanted(&self.tasks[t].state))
                .count() as u32
        };
        Host {
            instance_id: instance_id(i),
            lifecycle_state: if registered { "InService" } else { "Pending" }.to_owned(),
            container: registered.then(|| ContainerInstance {
                arn: container_arn(i),
                status: if inst.draining { "DRAINING" } else { "ACTIVE" }.to_owned(),
                running_tasks: count(|s| matches!(s, TaskState::Running)),
                pending_tasks: count(|s| matches!(s, TaskState::Starting)),
                // Told to stop and still finishing its file inside the stop timeout.
                stopping_tasks: count(|s| matches!(s, TaskState::Stopping)),
            }),
        }
    }

    /// Carries out one of the controller's calls as AWS would, or refuses it as AWS would.
    /// Nothing stops the controller from doing harm here: terminating a busy instance kills
    /// its workers, and the interruptions are counted. Keeping that from happening is the
    /// plan's job, and this is where the simulator checks it.
    pub fn act(&mut self, action: &Action) -> Result<(), ApiError> {
        let call = action.call();
        match action {
            Action::UpdateService { desired_count, .. } => {
                if *desired_count != self.desired_tasks {
                    self.desired_tasks = *desired_count;
                    self.scaling_actions += 1;
                }
            }
            Action::SetDesiredCapacity {
                desired_capacity, ..
            } => {
                if *desired_capacity > self.model.max_instances {
                    return Err(refused(
                        call,
                        ApiErrorKind::Invalid,
                        format!(
                            "ValidationError: new SetDesiredCapacity value {desired_capacity} \
                             is above max value {}",
                            self.model.max_instances
                        ),
                    ));
                }
                if *desired_capacity != self.desired_instances {
                    self.desired_instances = *desired_capacity;
                    self.scaling_actions += 1;
                }
            }
            Action::DrainContainerInstance {
                container_instance_arn,
                ..
            } => {
                let i = self.registered(call, container_instance_arn)?;
                self.instances[i].draining = true;
                // ECS stops the service's tasks on a draining instance (scale-in protection
                // does not hold them) and the service starts replacements elsewhere.
                let on_it: Vec<usize> = self.instances[i].tasks.iter().copied().collect();
                for task in on_it {
                    self.stop_task(task);
                }
            }
            Action::ActivateContainerInstance {
                container_instance_arn,
                ..
            } => {
                let i = self.registered(call, container_instance_arn)?;
                self.instances[i].draining = false;
            }
            Action::TerminateInstance {
                instance_id: id, ..
            } => {
                let i = id
                    .strip_prefix("i-")
                    .and_then(|n| n.parse::<usize>().ok())
                    .filter(|&i| self.live_instances.contains(&i) && instance_id(i) == *id)
                    .ok_or_else(|| {
                        refused(
                            call,
                            ApiErrorKind::NotFound,
                            format!("instance {id} is not in the group"),
                        )
                    })?;
                self.terminate_instance(i);
                self.desired_instances = self.desired_instances.saturating_sub(1);
                self.scaling_actions += 1;
            }
            Action::PutWarmPool { to, .. } => {
                if self.warm_pool_size.is_none() {
                    return Err(refused(
                        call,
                        ApiErrorKind::Invalid,
                        "the group has no warm pool and the controller creates none".into(),
                    ));
                }
                self.warm_pool_size = Some(*to);
            }
        }
        self.reconcile();
        Ok(())
    }

    /// The instance under a container instance ARN, if it is registered in the cluster.
    fn registered(&self, call: &'static str, arn: &str) -> Result<usize, ApiError> {
        arn.rsplit('/')
            .next()
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|&i| {
                self.live_instances.contains(&i)
                    && self.instances[i].state == InstanceState::InService
                    && container_arn(i) == arn
            })
            .ok_or_else(|| refused(call, ApiErrorKind::NotFound, format!("{arn}: MISSING")))
    }

    /// Records a decision of the controller's loop that made calls.
    pub fn record(&mut self, decision: DecisionRecord) {
        self.decisions.push(decision);
    }
}

/// A call the simulated AWS refuses, as the real one would.
fn refused(call: &'static str, kind: ApiErrorKind, message: String) -> ApiError {
    ApiError {
        call,
        kind,
        message,
    }
}

/// The ECS container instance ARN the world gives instance number `i`.
fn container_arn(i: usize) -> String {
    format!("arn:aws:ecs:sim:000000000000:container-instance/geobatch/{i}")
}

/// The EC2 instance id the world gives instance number `i`.
pub(super) fn instance_id(i: usize) -> String {
    format!("i-{i:08}")
}
