//! Carrying out planned calls: against AWS, or (dry-run) only saying what would be done.

use std::future::Future;

use aws_sdk_ecs::types::ContainerInstanceStatus;

use crate::aws::{ApiError, AwsClients};
use crate::plan::Action;

/// Makes (or pretends to make) one mutating call.
pub trait Actuator {
    /// Whether calls really happen; the decision log and metrics record it.
    fn dry_run(&self) -> bool;

    /// Carries out one action.
    fn apply(&mut self, action: &Action) -> impl Future<Output = Result<(), ApiError>> + Send;
}

/// Makes the calls through the AWS APIs.
#[derive(Debug, Clone)]
pub struct AwsActuator {
    clients: AwsClients,
}

impl AwsActuator {
    /// An actuator over the shared clients.
    pub fn new(clients: AwsClients) -> AwsActuator {
        AwsActuator { clients }
    }
}

impl Actuator for AwsActuator {
    fn dry_run(&self) -> bool {
        false
    }

    async fn apply(&mut self, action: &Action) -> Result<(), ApiError> {
        let call = action.call();
        match action {
            Action::UpdateService {
                cluster,
                service,
                desired_count,
                ..
            } => {
                self.clients
                    .ecs
                    .update_service()
                    .cluster(cluster)
                    .service(service)
                    .desired_count(to_i32(*desired_count))
                    .send()
                    .await
                    .map_err(|err| ApiError::from_sdk(call, err))?;
            }
            Action::SetDesiredCapacity {
                auto_scaling_group,
                desired_capacity,
                ..
            } => {
                self.clients
                    .autoscaling
                    .set_desired_capacity()
                    .auto_scaling_group_name(auto_scaling_group)
                    .desired_capacity(to_i32(*desired_capacity))
                    .honor_cooldown(false)
                    .send()
                    .await
                    .map_err(|err| ApiError::from_sdk(call, err))?;
            }
            Action::DrainContainerInstance {
                cluster,
                container_instance_arn,
                ..
            } => {
                set_container_state(
                    &self.clients,
                    cluster,
                    container_instance_arn,
                    ContainerInstanceStatus::Draining,
                )
                .await?;
            }
            Action::ActivateContainerInstance {
                cluster,
                container_instance_arn,
                ..
            } => {
                set_container_state(
                    &self.clients,
                    cluster,
                    container_instance_arn,
                    ContainerInstanceStatus::Active,
                )
                .await?;
            }
            Action::TerminateInstance { instance_id, .. } => {
                self.clients
                    .autoscaling
                    .terminate_instance_in_auto_scaling_group()
                    .instance_id(instance_id)
                    .should_decrement_desired_capacity(true)
                    .send()
                    .await
                    .map_err(|err| ApiError::from_sdk(call, err))?;
            }
            Action::PutWarmPool {
                auto_scaling_group,
                to,
                ..
            } => {
                // Only the sizes: the pool state and reuse policy stay as the stack set them.
                self.clients
                    .autoscaling
                    .put_warm_pool()
                    .auto_scaling_group_name(auto_scaling_group)
                    .min_size(to_i32(to.min_size))
                    .set_max_group_prepared_capacity(to.max_group_prepared_capacity.map(to_i32))
                    .send()
                    .await
                    .map_err(|err| ApiError::from_sdk(call, err))?;
            }
        }
        Ok(())
    }
}

async fn set_container_state(
    clients: &AwsClients,
    cluster: &str,
    arn: &str,
    status: ContainerInstanceStatus,
) -> Result<(), ApiError> {
    const CALL: &str = "UpdateContainerInstancesState";
    let output = clients
        .ecs
        .update_container_instances_state()
        .cluster(cluster)
        .container_instances(arn)
        .status(status)
        .send()
        .await
        .map_err(|err| ApiError::from_sdk(CALL, err))?;
    match output.failures().first() {
        Some(failure) => Err(ApiError::unexpected(
            CALL,
            format!(
                "{}: {}",
                failure.arn().unwrap_or(arn),
                failure.reason().unwrap_or("refused")
            ),
        )),
        None => Ok(()),
    }
}

/// Makes no call at all; the loop logs `would …` for each action instead.
#[derive(Debug, Clone, Copy, Default)]
pub struct DryRun;

impl Actuator for DryRun {
    fn dry_run(&self) -> bool {
        true
    }

    async fn apply(&mut self, _action: &Action) -> Result<(), ApiError> {
        Ok(())
    }
}

/// Sizes are validated far below `i32::MAX`; saturate rather than wrap if one ever is not.
fn to_i32(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}
