//! SQS queues in the local moto: the processor's dead-letter queue, created
//! with the local stack, and what arrived in it.

use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
use serde_json::{Map, Value, json};

/// The dead-letter queue's name in local runs.
pub const LOCAL_DEAD_LETTER_QUEUE: &str = "assessments-dlq";

/// A client for moto's SQS API at `endpoint`.
pub fn local_client(endpoint: &str) -> Client {
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "testkit", "testkit", None, None, "testkit",
        ))
        .build();
    Client::from_conf(config)
}

/// Creates the queue `name` (if missing); returns its URL.
pub async fn create_queue(endpoint: &str, name: &str) -> Result<String, String> {
    let created = local_client(endpoint)
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .map_err(|e| {
            format!(
                "create queue {name}: {}",
                aws_sdk_sqs::error::DisplayErrorContext(&e)
            )
        })?;
    created
        .queue_url
        .ok_or_else(|| format!("create queue {name}: no URL in the answer"))
}

/// Takes every message waiting in the queue (received and deleted), each as
/// `{"body": ..., "attributes": {name: string value}}`.
pub async fn drain(endpoint: &str, queue_url: &str) -> Result<Vec<Value>, String> {
    let client = local_client(endpoint);
    let mut taken = Vec::new();
    loop {
        let received = client
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| format!("receive: {}", aws_sdk_sqs::error::DisplayErrorContext(&e)))?;
        let messages = received.messages.unwrap_or_default();
        if messages.is_empty() {
            return Ok(taken);
        }
        for message in messages {
            let attributes: Map<String, Value> = message
                .message_attributes
                .unwrap_or_default()
                .into_iter()
                .map(|(name, value)| (name, json!(value.string_value)))
                .collect();
            taken.push(json!({"body": message.body, "attributes": attributes}));
            if let Some(handle) = message.receipt_handle {
                client
                    .delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(handle)
                    .send()
                    .await
                    .map_err(|e| {
                        format!("delete: {}", aws_sdk_sqs::error::DisplayErrorContext(&e))
                    })?;
            }
        }
    }
}
