//! The SQS calls the worker makes, behind one small trait.
//!
//! [`Queue`] is what the delivery rules ([`crate::message`], [`crate::service`]) are written
//! against: [`SqsQueue`] is the real one; the unit tests drive the same rules through an
//! in-memory queue with short deadlines. Every call is made with a deadline
//! ([`crate::deadline::within`]) by the caller, so a hung endpoint cannot hold a message's
//! fate or the shutdown drain.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use aws_sdk_sqs::types::{Message, MessageAttributeValue, MessageSystemAttributeName};

use crate::sdk_error::error_chain;
use crate::visibility::visibility_seconds;

/// SQS's largest receive batch.
pub const MAX_BATCH: usize = 10;

/// The queue operations of a worker. Errors are the call's own explanation.
pub trait Queue: Clone + Send + Sync + 'static {
    /// Long-polls for up to `max_messages` messages for `wait`, hiding them for `visibility`;
    /// asks for the receive count and the message attributes.
    fn receive(
        &self,
        max_messages: usize,
        wait: Duration,
        visibility: Duration,
    ) -> impl Future<Output = Result<Vec<Message>, String>> + Send;

    /// Deletes a held message: it is done.
    fn delete(&self, receipt_handle: &str) -> impl Future<Output = Result<(), String>> + Send;

    /// Sets a held message's visibility (a heartbeat, or a release after `visibility`).
    fn set_visibility(
        &self,
        receipt_handle: &str,
        visibility: Duration,
    ) -> impl Future<Output = Result<(), String>> + Send;

    /// Sends a new message with `body` and string `attributes`.
    fn send(
        &self,
        body: &str,
        attributes: &HashMap<String, String>,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

/// The worker's queue on SQS.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsQueue {
    /// The queue at `queue_url`, reached through `client`.
    pub fn new(client: aws_sdk_sqs::Client, queue_url: String) -> SqsQueue {
        SqsQueue { client, queue_url }
    }
}

impl Queue for SqsQueue {
    async fn receive(
        &self,
        max_messages: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Message>, String> {
        let output = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(i32::try_from(max_messages.min(MAX_BATCH)).unwrap_or(10))
            .wait_time_seconds(i32::try_from(wait.as_secs().min(20)).unwrap_or(20))
            .visibility_timeout(visibility_seconds(visibility))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|err| error_chain(&err))?;
        Ok(output.messages.unwrap_or_default())
    }

    async fn delete(&self, receipt_handle: &str) -> Result<(), String> {
        self.client
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .send()
            .await
            .map(drop)
            .map_err(|err| error_chain(&err))
    }

    async fn set_visibility(
        &self,
        receipt_handle: &str,
        visibility: Duration,
    ) -> Result<(), String> {
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(visibility_seconds(visibility))
            .send()
            .await
            .map(drop)
            .map_err(|err| error_chain(&err))
    }

    async fn send(&self, body: &str, attributes: &HashMap<String, String>) -> Result<(), String> {
        let mut request = self
            .client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body);
        for (name, value) in attributes {
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|err| err.to_string())?;
            request = request.message_attributes(name, value);
        }
        request
            .send()
            .await
            .map(drop)
            .map_err(|err| error_chain(&err))
    }
}

/// How many times SQS has handed `message` out, this time included (1 when SQS did not say).
pub fn receive_count(message: &Message) -> u32 {
    message
        .attributes()
        .and_then(|attrs| attrs.get(&MessageSystemAttributeName::ApproximateReceiveCount))
        .and_then(|count| count.parse().ok())
        .unwrap_or(1)
}

/// A string message attribute of `message`, if it has one by that name.
pub fn string_attribute<'a>(message: &'a Message, name: &str) -> Option<&'a str> {
    message
        .message_attributes()
        .and_then(|attrs| attrs.get(name))
        .and_then(MessageAttributeValue::string_value)
}
