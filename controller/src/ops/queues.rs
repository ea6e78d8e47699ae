//! The few SQS calls the batch commands share: one attribute of a queue, the dead-letter
//! queue behind it, and one `SendMessageBatch`.

use std::collections::HashMap;

use aws_sdk_sqs::types::{MessageAttributeValue, QueueAttributeName, SendMessageBatchRequestEntry};

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

/// A message for [`send_batch`]: its body and, for a message being moved, its attributes.
pub struct Outgoing {
    pub body: String,
    pub attributes: Option<HashMap<String, MessageAttributeValue>>,
}

/// An entry of a batch SQS refused: its index in the batch, and SQS's code and message.
pub struct Refused {
    pub index: usize,
    pub code: String,
    pub message: Option<String>,
}

/// What SQS did with a batch: the indices it accepted and the entries it refused.
pub struct BatchSent {
    pub accepted: Vec<usize>,
    pub refused: Vec<Refused>,
}

/// Sends up to ten messages in one `SendMessageBatch`. A refused entry is not an error of
/// the call: the caller says in its own words what a refusal means for its message.
pub async fn send_batch(
    clients: &OpsClients,
    queue_url: &str,
    messages: Vec<Outgoing>,
) -> Result<BatchSent, OpsError> {
    const CALL: &str = "SendMessageBatch";
    let entries = messages
        .into_iter()
        .enumerate()
        .map(|(index, message)| {
            SendMessageBatchRequestEntry::builder()
                .id(index.to_string())
                .message_body(message.body)
                .set_message_attributes(message.attributes)
                .build()
                .map_err(|err| OpsError::Aws {
                    call: CALL,
                    message: err.to_string(),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let output = clients
        .aws
        .sqs
        .send_message_batch()
        .queue_url(queue_url)
        .set_entries(Some(entries))
        .send()
        .await
        .map_err(|err| classify(CALL, Subject::Queue(queue_url), err))?;
    // Entry ids are the indices this function gave them, so an id that does not parse
    // cannot come from SQS; such an entry is dropped rather than guessed at.
    let accepted = output
        .successful()
        .iter()
        .filter_map(|ok| ok.id().parse().ok())
        .collect();
    let refused = output
        .failed()
        .iter()
        .filter_map(|failure| {
            Some(Refused {
                index: failure.id().parse().ok()?,
                code: failure.code().to_owned(),
                message: failure.message().map(str::to_owned),
            })
        })
        .collect();
    Ok(BatchSent { accepted, refused })
}
