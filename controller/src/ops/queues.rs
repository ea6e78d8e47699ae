//! The few SQS reads the batch commands share: one attribute of a queue, and the
//! dead-letter queue behind it.

use aws_sdk_sqs::types::QueueAttributeName;

use crate::ops::OpsError;
use crate::ops::error::{Subject, classify};
use crate::ops::setup::OpsClients;

/// One attribute of a queue (empty when SQS leaves it out); exit code 3 when the queue does
/// not exist.
pub async fn queue_attribute(
    clients: &OpsClients,
    queue_url: &str,
    name: QueueAttributeName,
) -> Result<String, OpsError> {
    const CALL: &str = "GetQueueAttributes";
    let output = clients
        .aws
        .sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(name.clone())
        .send()
        .await
        .map_err(|err| classify(CALL, Subject::Queue(queue_url), err))?;
    Ok(output
        .attributes()
        .and_then(|a| a.get(&name))
        .cloned()
        .unwrap_or_default())
}

/// The dead-letter queue URL from the queue's RedrivePolicy.
pub async fn dead_letter_queue(clients: &OpsClients, queue_url: &str) -> Result<String, OpsError> {
    let policy = queue_attribute(clients, queue_url, QueueAttributeName::RedrivePolicy).await?;
    let arn = serde_json::from_str::<serde_json::Value>(&policy)
        .ok()
        .and_then(|p| p.get("deadLetterTargetArn")?.as_str().map(str::to_owned))
        .ok_or_else(|| OpsError::NotFound {
            what: "dead-letter queue of",
            name: queue_url.to_owned(),
            call: "GetQueueAttributes",
            hint: "the queue has no RedrivePolicy; give the dead-letter queue with --dlq-url",
        })?;
    // arn:aws:sqs:REGION:ACCOUNT:NAME
    let mut parts = arn.rsplitn(3, ':');
    let (Some(name), Some(account)) = (parts.next(), parts.next()) else {
        return Err(OpsError::Aws {
            call: "GetQueueAttributes",
            message: format!("deadLetterTargetArn {arn} is not a queue ARN"),
        });
    };
    const CALL: &str = "GetQueueUrl";
    let output = clients
        .aws
        .sqs
        .get_queue_url()
        .queue_name(name)
        .queue_owner_aws_account_id(account)
        .send()
        .await
        .map_err(|err| classify(CALL, Subject::Queue(&arn), err))?;
    output.queue_url.ok_or_else(|| OpsError::Aws {
        call: CALL,
        message: format!("no URL for {arn}"),
    })
}

/// A count attribute of a queue, e.g. `ApproximateNumberOfMessages`.
pub async fn queue_count(
    clients: &OpsClients,
    queue_url: &str,
    name: QueueAttributeName,
) -> Result<u64, OpsError> {
    Ok(queue_attribute(clients, queue_url, name)
        .await?
        .parse()
        .unwrap_or(0))
}
