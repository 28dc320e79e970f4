//! Poison records: records that can never succeed (an invalid body, a 4xx
//! answer other than 408/429, a score DynamoDB cannot store) go straight to
//! the dead-letter queue with the reason as message attributes, instead of
//! coming back `MaxReceiveCount` times and spending scoring calls and rate
//! budget each time. Only records worth retrying stay in `batchItemFailures`.
//!
//! `DEAD_LETTER_QUEUE_URL` names the queue (the template sets the source
//! queue's own redrive target). Without it, or when the send fails or no
//! time is left, the record is reported failed as before and reaches the
//! dead-letter queue through the redrive policy.

use std::time::Duration;

use assessments_common::budget::Budget;
use assessments_common::xray;
use aws_sdk_sqs::types::MessageAttributeValue;

use crate::{ProcessError, Record};

/// The longest reason kept in the `FailureReason` attribute.
const MAX_REASON_CHARS: usize = 1000;
/// Time kept before the invocation's deadline after a send.
const SEND_MARGIN: Duration = Duration::from_millis(100);
/// One send's own timeout (also bounded by the time left).
const SEND_TIMEOUT: Duration = Duration::from_secs(2);

/// The dead-letter queue, written to directly.
#[derive(Debug, Clone)]
pub struct DeadLetters {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

/// Why a poison record could not be sent (it is then reported failed).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DeadLetterError {
    #[error("no time left before the invocation's deadline")]
    NoTime,
    #[error("sending to the dead-letter queue did not finish within {0}ms")]
    Timeout(u128),
    #[error("sending to the dead-letter queue failed: {0}")]
    Send(String),
}

fn attribute(value: &str) -> Result<MessageAttributeValue, DeadLetterError> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .map_err(|e| DeadLetterError::Send(e.to_string()))
}

impl DeadLetters {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: String) -> Self {
        DeadLetters { client, queue_url }
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// Sends `record` (its body as it came) with `error` as the reason,
    /// finishing [`SEND_MARGIN`] before the invocation's `deadline`.
    pub async fn send(
        &self,
        record: &Record<'_>,
        error: &ProcessError,
        deadline: &Budget,
    ) -> Result<(), DeadLetterError> {
        let left = deadline.less(SEND_MARGIN).remaining();
        if left.is_zero() {
            return Err(DeadLetterError::NoTime);
        }
        let limit = left.min(SEND_TIMEOUT);
        let reason: String = error.to_string().chars().take(MAX_REASON_CHARS).collect();
        // SQS refuses an empty body: a missing one is sent as the text below.
        let body = match record.body {
            Some(body) if !body.is_empty() => body,
            _ => "(no body)",
        };
        let source = match record.message_id {
            "" => "(none)",
            id => id,
        };
        let send = self
            .client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .message_attributes("FailureKind", attribute(error.kind())?)
            .message_attributes("FailureReason", attribute(&reason)?)
            .message_attributes("SourceMessageId", attribute(source)?)
            .send();
        let call = async {
            match tokio::time::timeout(limit, send).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(DeadLetterError::Send(
                    aws_sdk_sqs::error::DisplayErrorContext(&e).to_string(),
                )),
                Err(_) => Err(DeadLetterError::Timeout(limit.as_millis())),
            }
        };
        let span = tracing::trace_span!(
            target: "xray",
            "SQS",
            namespace = "aws",
            operation = "SendMessage",
            queue_url = %self.queue_url,
            failure = tracing::field::Empty,
        );
        xray::traced(span, call).await
    }
}
