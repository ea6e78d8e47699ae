//! A worker fleet in the emulator (queue, ECS cluster and service, Auto Scaling Group whose
//! instances are registered as container instances) and ways to read its state back.
//!
//! moto places no service tasks on container instances, so "an instance runs a task" is
//! made with `StartTask` on that instance, which moto does count in `runningTasksCount`.

#![allow(dead_code)] // each test binary uses its own part of the fixture

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_autoscaling::types::LifecycleState;
use aws_sdk_ecs::types::ContainerDefinition;
use geobatch_common::testing::{Emulator, unique_name};
use geobatch_controller::aws::AwsClients;
use geobatch_controller::config::{Pool, PoolFile};

/// The resources of one test's fleet.
pub struct Fleet {
    pub clients: AwsClients,
    pub queue_url: String,
    pub queue_name: String,
    pub cluster: String,
    pub service: String,
    pub group: String,
    task_definition: String,
}

/// What a test can assert on: the fleet's state as the emulator reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetState {
    pub service_desired: i32,
    pub group_desired: i32,
    /// (instance id, lifecycle state, container instance status, running tasks), sorted.
    pub instances: Vec<(String, String, String, i32)>,
}

impl Fleet {
    /// Creates a fleet with `tasks` desired tasks and `instances` registered instances.
    pub async fn create(emulator: &Emulator, tasks: i32, instances: i32) -> Fleet {
        let sdk = emulator.sdk_config().await;
        Fleet::create_with(
            AwsClients::new(&sdk, Duration::from_secs(60)),
            &unique_name("geo"),
            tasks,
            instances,
        )
        .await
    }

    /// Creates a fleet under a given name (to recreate one in a restarted emulator).
    pub async fn create_with(clients: AwsClients, name: &str, tasks: i32, instances: i32) -> Fleet {
        let queue_url = clients
            .sqs
            .create_queue()
            .queue_name(name)
            .attributes(
                aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
                "60",
            )
            .send()
            .await
            .expect("create queue")
            .queue_url
            .expect("queue url");
        clients
            .ecs
            .create_cluster()
            .cluster_name(name)
            .send()
            .await
            .expect("create cluster");
        clients
            .ecs
            .register_task_definition()
            .family(name)
            .container_definitions(
                ContainerDefinition::builder()
                    .name("worker")
                    .image("geobatch-worker")
                    .memory(128)
                    .build(),
            )
            .send()
            .await
            .expect("register task definition");
        clients
            .ecs
            .create_service()
            .cluster(name)
            .service_name(name)
            .task_definition(name)
            .desired_count(tasks)
            .send()
            .await
            .expect("create service");
        clients
            .autoscaling
            .create_launch_configuration()
            .launch_configuration_name(name)
            .image_id("ami-12c6146b")
            .instance_type("t3.micro")
            .send()
            .await
            .expect("create launch configuration");
        clients
            .autoscaling
            .create_auto_scaling_group()
            .auto_scaling_group_name(name)
            .launch_configuration_name(name)
            .min_size(0)
            .max_size(10)
            .desired_capacity(instances)
            .availability_zones("us-east-1a")
            .send()
            .await
            .expect("create auto scaling group");
        let fleet = Fleet {
            clients,
            queue_name: name.to_owned(),
            queue_url,
            cluster: name.to_owned(),
            service: name.to_owned(),
            group: name.to_owned(),
            task_definition: name.to_owned(),
        };
        fleet.register_new_instances().await;
        fleet
    }

    /// The config of a pool for this fleet, with short windows for tests and one task per
    /// instance and per message, so counts are easy to follow; `edit` adjusts it.
    pub fn pool(&self, edit: impl FnOnce(&mut PoolFile)) -> Pool {
        self.config(edit)
            .validate()
            .expect("valid test config")
            .pools
            .remove(0)
    }

    /// The whole config file for this fleet.
    pub fn config(
        &self,
        edit: impl FnOnce(&mut PoolFile),
    ) -> geobatch_controller::config::ConfigFile {
        let text = format!(
            r#"
max_backoff_secs = 1
api_timeout_secs = 3
cloudwatch_interval_secs = 0.2

[[pool]]
name = "{name}"
queue_url = "{queue_url}"
cluster = "{cluster}"
service = "{service}"
auto_scaling_group = "{group}"
tasks_per_instance = 1
messages_per_task = 1
max_tasks = 10
max_instances = 10
poll_interval_secs = 0.2
scale_in_stabilization_secs = 0
idle_window_secs = 0
"#,
            name = self.queue_name,
            queue_url = self.queue_url,
            cluster = self.cluster,
            service = self.service,
            group = self.group,
        );
        let mut file = geobatch_controller::config::ConfigFile::parse(&text, "test".as_ref())
            .expect("test config parses");
        edit(&mut file.pools[0]);
        file
    }

    /// What an ECS agent does when an instance boots: registers every group instance that
    /// has no container instance yet.
    pub async fn register_new_instances(&self) {
        let registered: Vec<String> = self
            .container_instances()
            .await
            .into_iter()
            .map(|(id, _, _, _)| id)
            .collect();
        for (id, _) in self.group_instances().await {
            if registered.contains(&id) {
                continue;
            }
            let document = format!(r#"{{"instanceId": "{id}", "region": "us-east-1"}}"#);
            self.clients
                .ecs
                .register_container_instance()
                .cluster(&self.cluster)
                .instance_identity_document(document)
                .send()
                .await
                .expect("register container instance");
        }
    }

    /// Starts a task on the container instance of `instance_id`: that instance is busy.
    pub async fn start_task_on(&self, instance_id: &str) -> String {
        let (_, arn, _, _) = self
            .container_instances()
            .await
            .into_iter()
            .find(|(id, _, _, _)| id == instance_id)
            .expect("instance is registered");
        self.clients
            .ecs
            .start_task()
            .cluster(&self.cluster)
            .task_definition(&self.task_definition)
            .container_instances(arn)
            .send()
            .await
            .expect("start task")
            .tasks()
            .first()
            .and_then(|t| t.task_arn())
            .expect("task arn")
            .to_owned()
    }

    /// Stops a task started by [`Fleet::start_task_on`].
    pub async fn stop_task(&self, task_arn: &str) {
        self.clients
            .ecs
            .stop_task()
            .cluster(&self.cluster)
            .task(task_arn)
            .send()
            .await
            .expect("stop task");
    }

    /// Sends `n` messages.
    pub async fn send(&self, n: usize) {
        for i in 0..n {
            self.clients
                .sqs
                .send_message()
                .queue_url(&self.queue_url)
                .message_body(format!("message {i}"))
                .send()
                .await
                .expect("send message");
        }
    }

    /// Receives up to `n` messages (they go in flight for the visibility timeout) and
    /// returns their receipt handles.
    pub async fn receive(&self, n: i32) -> Vec<String> {
        self.clients
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(n)
            .send()
            .await
            .expect("receive")
            .messages()
            .iter()
            .filter_map(|m| m.receipt_handle().map(str::to_owned))
            .collect()
    }

    /// Deletes received messages: the work is done.
    pub async fn delete(&self, receipts: &[String]) {
        for receipt in receipts {
            self.clients
                .sqs
                .delete_message()
                .queue_url(&self.queue_url)
                .receipt_handle(receipt)
                .send()
                .await
                .expect("delete message");
        }
    }

    /// Publishes a `NumberOfEmptyReceives` datapoint for the queue, as SQS does in AWS.
    pub async fn put_empty_receives(&self, value: f64) {
        use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
        self.clients
            .cloudwatch
            .put_metric_data()
            .namespace("AWS/SQS")
            .metric_data(
                MetricDatum::builder()
                    .metric_name("NumberOfEmptyReceives")
                    .dimensions(
                        Dimension::builder()
                            .name("QueueName")
                            .value(&self.queue_name)
                            .build(),
                    )
                    .value(value)
                    .unit(StandardUnit::Count)
                    .build(),
            )
            .send()
            .await
            .expect("put metric data");
    }

    /// The group's instances as (id, lifecycle state).
    pub async fn group_instances(&self) -> Vec<(String, String)> {
        let output = self
            .clients
            .autoscaling
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(&self.group)
            .send()
            .await
            .expect("describe group");
        let group = output.auto_scaling_groups().first().expect("group exists");
        let mut instances: Vec<(String, String)> = group
            .instances()
            .iter()
            .map(|i| {
                (
                    i.instance_id().unwrap_or_default().to_owned(),
                    i.lifecycle_state()
                        .map_or("", LifecycleState::as_str)
                        .to_owned(),
                )
            })
            .collect();
        instances.sort();
        instances
    }

    /// Container instances as (EC2 id, ARN, status, running tasks).
    pub async fn container_instances(&self) -> Vec<(String, String, String, i32)> {
        let arns = self
            .clients
            .ecs
            .list_container_instances()
            .cluster(&self.cluster)
            .send()
            .await
            .expect("list container instances")
            .container_instance_arns()
            .to_vec();
        if arns.is_empty() {
            return Vec::new();
        }
        let output = self
            .clients
            .ecs
            .describe_container_instances()
            .cluster(&self.cluster)
            .set_container_instances(Some(arns))
            .send()
            .await
            .expect("describe container instances");
        let mut out: Vec<_> = output
            .container_instances()
            .iter()
            .map(|c| {
                (
                    c.ec2_instance_id().unwrap_or_default().to_owned(),
                    c.container_instance_arn().unwrap_or_default().to_owned(),
                    c.status().unwrap_or_default().to_owned(),
                    c.running_tasks_count(),
                )
            })
            .collect();
        out.sort();
        out
    }

    /// The service's desired count, as ECS reports it.
    pub async fn service_desired(&self) -> i32 {
        self.clients
            .ecs
            .describe_services()
            .cluster(&self.cluster)
            .services(&self.service)
            .send()
            .await
            .expect("describe service")
            .services()
            .first()
            .expect("service exists")
            .desired_count()
    }

    /// The fleet's whole state.
    pub async fn state(&self) -> FleetState {
        let service = self
            .clients
            .ecs
            .describe_services()
            .cluster(&self.cluster)
            .services(&self.service)
            .send()
            .await
            .expect("describe service");
        let service_desired = service
            .services()
            .first()
            .expect("service exists")
            .desired_count();
        let group = self
            .clients
            .autoscaling
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(&self.group)
            .send()
            .await
            .expect("describe group");
        let group_desired = group
            .auto_scaling_groups()
            .first()
            .and_then(|g| g.desired_capacity())
            .expect("group desired capacity");
        let containers = self.container_instances().await;
        let instances = self
            .group_instances()
            .await
            .into_iter()
            .map(|(id, lifecycle)| {
                let (status, running) = containers
                    .iter()
                    .find(|(cid, _, _, _)| *cid == id)
                    .map(|(_, _, status, running)| (status.clone(), *running))
                    .unwrap_or_default();
                (id, lifecycle, status, running)
            })
            .collect();
        FleetState {
            service_desired,
            group_desired,
            instances,
        }
    }
}

/// A writer the decision log can own while the test reads what it wrote.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Every decision record written so far.
    pub fn records(&self) -> Vec<serde_json::Value> {
        let bytes = self.0.lock().expect("lock").clone();
        String::from_utf8(bytes)
            .expect("utf-8")
            .lines()
            .map(|line| serde_json::from_str(line).expect("each line is JSON"))
            .collect()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
