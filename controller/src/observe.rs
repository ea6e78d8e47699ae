//! Observing a pool: the queue, the ECS service, its container instances and the tasks
//! being stopped on them, the Auto Scaling Group and its warm pool, and (once a CloudWatch
//! interval) the queue's SQS metrics.
//!
//! The group's instances are counted apart: in service (capacity), pending (booting, or
//! started from the warm pool), interrupted (`Terminating*`: a Spot interruption, a
//! capacity rebalance or a scale-in takes them; never capacity) and warm (stopped in the
//! warm pool, capacity only once the group starts them).
//!
//! Each call that fails leaves its part of the snapshot empty and its error in
//! [`PoolSnapshot::errors`]; the policy then holds the current size. Nothing here decides.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_autoscaling::types::LifecycleState;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat, ScanBy};
use aws_sdk_ecs::types::{DesiredStatus, Task};
use aws_sdk_sqs::types::QueueAttributeName;
use serde::Serialize;

use crate::aws::{ApiError, AwsClients};
use crate::config::Pool;
use crate::policy::{InstanceGroup, Observation, QueueDepth, ServiceTasks, WarmPoolSize};

/// Everything one poll saw of a pool.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct PoolSnapshot {
    /// What the policy decides on.
    pub observation: Observation,
    /// The group's instances joined with their ECS container instances, for choosing which
    /// instances may go; `None` when either listing failed.
    pub hosts: Option<Vec<Host>>,
    /// CloudWatch's latest `ApproximateNumberOfMessagesVisible`, logged next to the live SQS
    /// figure as corroboration.
    pub cloudwatch_visible: Option<f64>,
    /// The calls that failed in this poll.
    #[serde(skip)]
    pub errors: Vec<ApiError>,
}

/// One instance of the Auto Scaling Group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Host {
    /// The EC2 instance id.
    pub instance_id: String,
    /// The group's lifecycle state (`InService`, `Pending`, `Terminating`, ...).
    pub lifecycle_state: String,
    /// The ECS container instance on it; `None` until its agent has registered.
    pub container: Option<ContainerInstance>,
}

/// An ECS container instance, as far as choosing idle instances needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerInstance {
    /// Its ARN, for the drain call.
    pub arn: String,
    /// `ACTIVE`, `DRAINING`, ...
    pub status: String,
    /// Tasks running on it.
    pub running_tasks: u32,
    /// Tasks placed on it and starting.
    pub pending_tasks: u32,
    /// Tasks ECS is stopping on it: desired status `STOPPED`, last status not yet (still
    /// inside their stop timeout, finishing a file). The counts above go by last status
    /// (`RUNNING`, `PENDING`), so a task in `DEACTIVATING`, `STOPPING` or `DEPROVISIONING`
    /// is in neither, yet the worker in it is still at work.
    pub stopping_tasks: u32,
}

impl Host {
    /// Whether the group counts the instance as serving.
    pub fn in_service(&self) -> bool {
        self.lifecycle_state == "InService"
    }

    /// Whether ECS no longer places tasks on it.
    pub fn draining(&self) -> bool {
        self.container
            .as_ref()
            .is_some_and(|c| c.status == "DRAINING")
    }

    /// Whether it is registered and neither runs, starts nor stops a task: the only kind
    /// of instance the controller will ever remove.
    pub fn idle(&self) -> bool {
        self.container
            .as_ref()
            .is_some_and(|c| c.running_tasks == 0 && c.pending_tasks == 0 && c.stopping_tasks == 0)
    }
}

/// Where snapshots come from: AWS for the live loop and `decide`, anything else in tests
/// and the simulator.
pub trait Observer {
    /// Observes one pool now. Never fails as a whole: failed parts are left empty.
    fn observe(&mut self, pool: &Pool) -> impl Future<Output = PoolSnapshot> + Send;
}

/// Observes a pool through the AWS APIs.
#[derive(Debug)]
pub struct AwsObserver {
    clients: AwsClients,
    cloudwatch_interval: Duration,
    cloudwatch: Option<CloudWatchReading>,
}

/// The last CloudWatch answer, reused until the next interval.
#[derive(Debug, Clone, Copy)]
struct CloudWatchReading {
    read_at: Instant,
    empty_receives: Option<f64>,
    visible: Option<f64>,
}

/// How far back CloudWatch is asked for datapoints: SQS metrics can lag by minutes.
const CLOUDWATCH_LOOKBACK: Duration = Duration::from_secs(15 * 60);

impl AwsObserver {
    /// An observer for one pool; CloudWatch is read at most once per `cloudwatch_interval`.
    pub fn new(clients: AwsClients, cloudwatch_interval: Duration) -> AwsObserver {
        AwsObserver {
            clients,
            cloudwatch_interval,
            cloudwatch: None,
        }
    }

    /// The CloudWatch figures: the cached ones inside the interval, fresh ones otherwise.
    /// A failed read forgets the old figures (stale corroboration is none) and is retried
    /// after an interval, not on every poll.
    async fn cloudwatch(
        clients: &AwsClients,
        cache: &mut Option<CloudWatchReading>,
        interval: Duration,
        pool: &Pool,
    ) -> (CloudWatchReading, Option<ApiError>) {
        let now = Instant::now();
        if let Some(reading) = *cache
            && now.duration_since(reading.read_at) < interval
        {
            return (reading, None);
        }
        let (reading, error) = match queue_metrics(clients, &pool.queue_name).await {
            Ok((empty_receives, visible)) => (
                CloudWatchReading {
                    read_at: now,
                    empty_receives,
                    visible,
                },
                None,
            ),
            Err(err) => (
                CloudWatchReading {
                    read_at: now,
                    empty_receives: None,
                    visible: None,
                },
                Some(err),
            ),
        };
        *cache = Some(reading);
        (reading, error)
    }
}

impl Observer for AwsObserver {
    async fn observe(&mut self, pool: &Pool) -> PoolSnapshot {
        // All reads at once, so a poll takes one round trip (or one timeout), not five.
        // CloudWatch only matters to a decision once the queue looks empty, but it is read
        // on its own schedule so the figure is there when that moment comes.
        let (queue, service, group, containers, warm_pool, (reading, cloudwatch_error)) = tokio::join!(
            queue_depth(&self.clients, pool),
            service_tasks(&self.clients, pool),
            group(&self.clients, pool),
            container_instances(&self.clients, pool),
            warm_pool(&self.clients, pool),
            AwsObserver::cloudwatch(
                &self.clients,
                &mut self.cloudwatch,
                self.cloudwatch_interval,
                pool
            ),
        );
        let mut errors = Vec::new();
        let queue = keep(queue, &mut errors);
        let service = keep(service, &mut errors);
        let group = keep(group, &mut errors);
        let containers = keep(containers, &mut errors);
        let (warm_pool, warm) = keep(warm_pool, &mut errors).unwrap_or_default();
        errors.extend(cloudwatch_error);

        let hosts = match (&group, containers) {
            (Some((_, instances)), Some(mut containers)) => Some(
                instances
                    .iter()
                    .map(|(id, state)| Host {
                        instance_id: id.clone(),
                        lifecycle_state: state.clone(),
                        container: containers.remove(id),
                    })
                    .collect(),
            ),
            _ => None,
        };
        PoolSnapshot {
            observation: Observation {
                queue,
                service,
                instances: group.map(|(group, _)| InstanceGroup { warm, ..group }),
                latest_empty_receives: reading.empty_receives,
                warm_pool,
            },
            hosts,
            cloudwatch_visible: reading.visible,
            errors,
        }
    }
}

fn keep<T>(result: Result<T, ApiError>, errors: &mut Vec<ApiError>) -> Option<T> {
    result.map_err(|err| errors.push(err)).ok()
}

async fn queue_depth(clients: &AwsClients, pool: &Pool) -> Result<QueueDepth, ApiError> {
    const CALL: &str = "GetQueueAttributes";
    let output = clients
        .sqs
        .get_queue_attributes()
        .queue_url(&pool.queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .map_err(|err| ApiError::from_sdk(CALL, err))?;
    let attributes = output.attributes();
    let count = |name: QueueAttributeName| -> Result<u64, ApiError> {
        let value = attributes.and_then(|a| a.get(&name)).ok_or_else(|| {
            ApiError::unexpected(CALL, format!("no {} in the answer", name.as_str()))
        })?;
        value.parse().map_err(|_| {
            ApiError::unexpected(CALL, format!("{} is {value:?}, not a count", name.as_str()))
        })
    };
    Ok(QueueDepth {
        visible: count(QueueAttributeName::ApproximateNumberOfMessages)?,
        in_flight: count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)?,
        delayed: count(QueueAttributeName::ApproximateNumberOfMessagesDelayed)?,
    })
}

async fn service_tasks(clients: &AwsClients, pool: &Pool) -> Result<ServiceTasks, ApiError> {
    const CALL: &str = "DescribeServices";
    let output = clients
        .ecs
        .describe_services()
        .cluster(&pool.cluster)
        .services(&pool.service)
        .send()
        .await
        .map_err(|err| ApiError::from_sdk(CALL, err))?;
    let service = output
        .services()
        .iter()
        .find(|s| s.service_name() == Some(pool.service.as_str()) && s.status() != Some("INACTIVE"))
        .ok_or_else(|| {
            let why = output
                .failures()
                .first()
                .and_then(|f| f.reason())
                .unwrap_or("not in the answer");
            ApiError::unexpected(
                CALL,
                format!(
                    "service {} in cluster {}: {why}",
                    pool.service, pool.cluster
                ),
            )
        })?;
    Ok(ServiceTasks {
        desired: count(service.desired_count()),
        running: count(service.running_count()),
        pending: count(service.pending_count()),
    })
}

/// The group's counts and its instances as (instance id, lifecycle state).
async fn group(
    clients: &AwsClients,
    pool: &Pool,
) -> Result<(InstanceGroup, Vec<(String, String)>), ApiError> {
    const CALL: &str = "DescribeAutoScalingGroups";
    let output = clients
        .autoscaling
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(&pool.auto_scaling_group)
        .send()
        .await
        .map_err(|err| ApiError::from_sdk(CALL, err))?;
    let group = output
        .auto_scaling_groups()
        .iter()
        .find(|g| g.auto_scaling_group_name() == Some(pool.auto_scaling_group.as_str()))
        .ok_or_else(|| {
            ApiError::unexpected(
                CALL,
                format!("no Auto Scaling Group named {}", pool.auto_scaling_group),
            )
        })?;
    let desired = group
        .desired_capacity()
        .ok_or_else(|| ApiError::unexpected(CALL, "the group has no desired capacity"))?;
    let mut instances: Vec<(String, String)> = group
        .instances()
        .iter()
        .filter_map(|i| {
            let id = i.instance_id()?.to_owned();
            let state = i
                .lifecycle_state()
                .map_or("Unknown", LifecycleState::as_str)
                .to_owned();
            Some((id, state))
        })
        .collect();
    instances.sort();
    let states: Vec<&str> = instances.iter().map(|(_, state)| state.as_str()).collect();
    Ok((
        InstanceGroup {
            desired: count(desired),
            ..count_lifecycle_states(&states)
        },
        instances,
    ))
}

/// The group's instances counted by what they are to capacity (all but `desired` and
/// `warm`, which come from elsewhere).
pub fn count_lifecycle_states(states: &[&str]) -> InstanceGroup {
    let tally = |matches: fn(&str) -> bool| {
        u32::try_from(states.iter().filter(|s| matches(s)).count()).unwrap_or(u32::MAX)
    };
    InstanceGroup {
        in_service: tally(|s| s == "InService"),
        pending: tally(|s| s.starts_with("Pending")),
        interrupted: tally(|s| s.starts_with("Terminating")),
        ..InstanceGroup::default()
    }
}

/// The warm pool as configured and how many instances it holds; `(None, 0)` when the group
/// has none.
async fn warm_pool(
    clients: &AwsClients,
    pool: &Pool,
) -> Result<(Option<WarmPoolSize>, u32), ApiError> {
    const CALL: &str = "DescribeWarmPool";
    let mut size = None;
    let mut warm = 0u32;
    let mut next_token = None;
    loop {
        let page = clients
            .autoscaling
            .describe_warm_pool()
            .auto_scaling_group_name(&pool.auto_scaling_group)
            .set_next_token(next_token)
            .send()
            .await
            .map_err(|err| ApiError::from_sdk(CALL, err))?;
        if let Some(config) = page.warm_pool_configuration() {
            size = Some(WarmPoolSize {
                min_size: config.min_size().map_or(0, count),
                max_group_prepared_capacity: config
                    .max_group_prepared_capacity()
                    .and_then(|max| u32::try_from(max).ok()),
            });
        }
        let in_pool = page
            .instances()
            .iter()
            .filter(|i| {
                i.lifecycle_state()
                    .is_some_and(|s| !s.as_str().starts_with("Warmed:Terminat"))
            })
            .count();
        warm = warm.saturating_add(u32::try_from(in_pool).unwrap_or(u32::MAX));
        next_token = page.next_token().map(str::to_owned);
        if next_token.is_none() {
            break;
        }
    }
    Ok((size, warm))
}

/// The cluster's container instances by EC2 instance id, with the tasks being stopped on
/// each.
async fn container_instances(
    clients: &AwsClients,
    pool: &Pool,
) -> Result<HashMap<String, ContainerInstance>, ApiError> {
    let (mut by_instance, stopping) = tokio::try_join!(
        registered_instances(clients, pool),
        stopping_tasks(clients, pool)
    )?;
    for container in by_instance.values_mut() {
        container.stopping_tasks = stopping.get(&container.arn).copied().unwrap_or(0);
    }
    Ok(by_instance)
}

/// Tasks being stopped, counted by container instance ARN. `ListTasks` with desired status
/// `STOPPED` names the tasks ECS is stopping and those it stopped in the last hour or so;
/// `DescribeTasks` tells them apart by their last status.
async fn stopping_tasks(
    clients: &AwsClients,
    pool: &Pool,
) -> Result<HashMap<String, u32>, ApiError> {
    let mut arns = Vec::new();
    let mut next_token = None;
    loop {
        let page = clients
            .ecs
            .list_tasks()
            .cluster(&pool.cluster)
            .desired_status(DesiredStatus::Stopped)
            .set_next_token(next_token)
            .send()
            .await
            .map_err(|err| ApiError::from_sdk("ListTasks", err))?;
        arns.extend(page.task_arns().iter().cloned());
        next_token = page.next_token().map(str::to_owned);
        if next_token.is_none() {
            break;
        }
    }
    let mut stopping = HashMap::new();
    // DescribeTasks takes at most 100 at a time.
    for chunk in arns.chunks(100) {
        let output = clients
            .ecs
            .describe_tasks()
            .cluster(&pool.cluster)
            .set_tasks(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|err| ApiError::from_sdk("DescribeTasks", err))?;
        count_stopping(output.tasks(), &mut stopping);
    }
    Ok(stopping)
}

/// Adds the tasks that are stopping but not stopped to their container instance's count.
fn count_stopping(tasks: &[Task], by_instance: &mut HashMap<String, u32>) {
    for task in tasks {
        let stopping =
            task.desired_status() == Some("STOPPED") && task.last_status() != Some("STOPPED");
        if let (true, Some(arn)) = (stopping, task.container_instance_arn()) {
            *by_instance.entry(arn.to_owned()).or_default() += 1;
        }
    }
}

/// The cluster's registered container instances by EC2 instance id, as
/// `DescribeContainerInstances` counts their tasks.
async fn registered_instances(
    clients: &AwsClients,
    pool: &Pool,
) -> Result<HashMap<String, ContainerInstance>, ApiError> {
    let mut arns = Vec::new();
    let mut next_token = None;
    loop {
        let page = clients
            .ecs
            .list_container_instances()
            .cluster(&pool.cluster)
            .set_next_token(next_token)
            .send()
            .await
            .map_err(|err| ApiError::from_sdk("ListContainerInstances", err))?;
        arns.extend(page.container_instance_arns().iter().cloned());
        next_token = page.next_token().map(str::to_owned);
        if next_token.is_none() {
            break;
        }
    }
    let mut by_instance = HashMap::with_capacity(arns.len());
    // DescribeContainerInstances takes at most 100 at a time.
    for chunk in arns.chunks(100) {
        let output = clients
            .ecs
            .describe_container_instances()
            .cluster(&pool.cluster)
            .set_container_instances(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|err| ApiError::from_sdk("DescribeContainerInstances", err))?;
        for ci in output.container_instances() {
            let (Some(instance_id), Some(arn)) =
                (ci.ec2_instance_id(), ci.container_instance_arn())
            else {
                continue;
            };
            by_instance.insert(
                instance_id.to_owned(),
                ContainerInstance {
                    arn: arn.to_owned(),
                    status: ci.status().unwrap_or("UNKNOWN").to_owned(),
                    running_tasks: count(ci.running_tasks_count()),
                    pending_tasks: count(ci.pending_tasks_count()),
                    stopping_tasks: 0,
                },
            );
        }
    }
    Ok(by_instance)
}

/// The latest `NumberOfEmptyReceives` (sum) and `ApproximateNumberOfMessagesVisible`
/// (maximum) datapoints of the queue's 1-minute periods.
async fn queue_metrics(
    clients: &AwsClients,
    queue_name: &str,
) -> Result<(Option<f64>, Option<f64>), ApiError> {
    const CALL: &str = "GetMetricData";
    let query = |id: &str, metric: &str, stat: &str| {
        MetricDataQuery::builder()
            .id(id)
            .metric_stat(
                MetricStat::builder()
                    .metric(
                        Metric::builder()
                            .namespace("AWS/SQS")
                            .metric_name(metric)
                            .dimensions(
                                Dimension::builder()
                                    .name("QueueName")
                                    .value(queue_name)
                                    .build(),
                            )
                            .build(),
                    )
                    .period(60)
                    .stat(stat)
                    .build(),
            )
            .build()
    };
    let now = SystemTime::now();
    let start = now
        .checked_sub(CLOUDWATCH_LOOKBACK)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    // The end reaches past now so the current, still-open period is included whatever
    // precision the timestamps travel with (the query protocol sends whole seconds).
    let end = now + Duration::from_secs(60);
    let output = clients
        .cloudwatch
        .get_metric_data()
        .start_time(DateTime::from(start))
        .end_time(DateTime::from(end))
        .scan_by(ScanBy::TimestampDescending)
        .metric_data_queries(query("empty", "NumberOfEmptyReceives", "Sum"))
        .metric_data_queries(query(
            "visible",
            "ApproximateNumberOfMessagesVisible",
            "Maximum",
        ))
        .send()
        .await
        .map_err(|err| ApiError::from_sdk(CALL, err))?;
    let latest = |id: &str| {
        output
            .metric_data_results()
            .iter()
            .find(|r| r.id() == Some(id))
            .and_then(|r| {
                // Newest first was asked for, but take the maximum timestamp anyway: the
                // emulator and older API versions do not all honour ScanBy.
                r.timestamps()
                    .iter()
                    .zip(r.values())
                    .max_by_key(|(at, _)| (at.secs(), at.subsec_nanos()))
                    .map(|(_, value)| *value)
            })
    };
    Ok((latest("empty"), latest("visible")))
}

/// ECS and Auto Scaling counts are `i32` on the wire; a negative one would be a bug there,
/// read as 0.
fn count(value: i32) -> u32 {
    u32::try_from(value).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(instance: &str, desired: &str, last: &str) -> Task {
        Task::builder()
            .container_instance_arn(instance)
            .desired_status(desired)
            .last_status(last)
            .build()
    }

    /// Issue 12, class 9: a task ECS is stopping (desired `STOPPED`, still inside its stop
    /// timeout in any of the states before `STOPPED`) counts against its instance; a task
    /// that has stopped does not.
    #[test]
    fn tasks_being_stopped_are_counted_on_their_instance() {
        let tasks = [
            task("arn:ci/1", "STOPPED", "RUNNING"),
            task("arn:ci/1", "STOPPED", "DEACTIVATING"),
            task("arn:ci/2", "STOPPED", "STOPPING"),
            task("arn:ci/2", "STOPPED", "DEPROVISIONING"),
            task("arn:ci/3", "STOPPED", "STOPPED"),
        ];
        let mut counts = HashMap::new();
        count_stopping(&tasks, &mut counts);
        assert_eq!(counts.get("arn:ci/1"), Some(&2));
        assert_eq!(counts.get("arn:ci/2"), Some(&2));
        assert_eq!(counts.get("arn:ci/3"), None);
    }

    #[test]
    fn an_instance_with_a_stopping_task_is_not_idle() {
        let host = |stopping_tasks| Host {
            instance_id: "i-1".into(),
            lifecycle_state: "InService".into(),
            container: Some(ContainerInstance {
                arn: "arn:ci/1".into(),
                status: "ACTIVE".into(),
                running_tasks: 0,
                pending_tasks: 0,
                stopping_tasks,
            }),
        };
        assert!(host(0).idle());
        assert!(!host(1).idle());
    }
}
