//! Idempotent creation of the messaging resources (`orchestrator provision`): the
//! projection-updates and run-lifecycle queues with their DLQs and redrive
//! policies, the run-requests topic, a run-requests queue subscribed with raw
//! delivery (what a metric runner reads), and the output bucket.

use aws_sdk_sqs::types::QueueAttributeName;

#[derive(Debug, Clone)]
pub struct ProvisionSpec {
    /// Prepended to every name (e.g. `dev-`), so that several stacks share an account.
    pub prefix: String,
    pub fifo: bool,
    pub output_bucket: String,
    /// Receives before SQS itself moves a message to the DLQ (a backstop
    /// behind the workers' own `MAX_RECEIVE_COUNT`).
    pub max_receive_count: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provisioned {
    pub projection_updates_queue_url: String,
    pub projection_updates_dlq_url: String,
    pub run_lifecycle_queue_url: String,
    pub run_lifecycle_dlq_url: String,
    pub run_requests_topic_arn: String,
    pub run_requests_queue_url: String,
    pub output_bucket: String,
}

impl Provisioned {
    /// The environment variables for the workers (docs/operations.md).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "PROJECTION_UPDATES_QUEUE_URL",
                self.projection_updates_queue_url.clone(),
            ),
            (
                "RUN_LIFECYCLE_QUEUE_URL",
                self.run_lifecycle_queue_url.clone(),
            ),
            (
                "RUN_REQUESTS_TOPIC_ARN",
                self.run_requests_topic_arn.clone(),
            ),
            (
                "RUN_REQUESTS_QUEUE_URL",
                self.run_requests_queue_url.clone(),
            ),
            ("OUTPUT_BUCKET", self.output_bucket.clone()),
        ]
    }
}

#[derive(Debug, thiserror::Error)]
#[error("provisioning {what} failed: {message}")]
pub struct ProvisionError {
    pub what: String,
    pub message: String,
}

fn fail(what: impl Into<String>) -> impl FnOnce(String) -> ProvisionError {
    let what = what.into();
    move |message| ProvisionError { what, message }
}

fn ctx<E: std::error::Error + 'static, R: std::fmt::Debug>(
    e: aws_smithy_runtime_api::client::result::SdkError<E, R>,
) -> String {
    aws_sdk_sqs::error::DisplayErrorContext(e).to_string()
}

struct Queue {
    url: String,
    arn: String,
}

async fn queue(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    fifo: bool,
    redrive_to: Option<(&str, u32)>,
) -> Result<Queue, ProvisionError> {
    let mut req = sqs.create_queue().queue_name(name);
    if fifo {
        req = req
            .attributes(QueueAttributeName::FifoQueue, "true")
            .attributes(QueueAttributeName::ContentBasedDeduplication, "false");
    }
    if let Some((dlq_arn, max)) = redrive_to {
        let policy =
            serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max.to_string()});
        req = req.attributes(QueueAttributeName::RedrivePolicy, policy.to_string());
    }
    let url = req
        .send()
        .await
        .map_err(|e| fail(format!("queue {name}"))(ctx(e)))?
        .queue_url
        .ok_or_else(|| fail(format!("queue {name}"))("no queue URL returned".into()))?;
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| fail(format!("queue {name}"))(ctx(e)))?
        .attributes
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .ok_or_else(|| fail(format!("queue {name}"))("no queue ARN returned".into()))?;
    Ok(Queue { url, arn })
}

/// A queue and its DLQ, wired by a RedrivePolicy.
async fn queue_with_dlq(
    sqs: &aws_sdk_sqs::Client,
    base: &str,
    spec: &ProvisionSpec,
) -> Result<(Queue, Queue), ProvisionError> {
    let suffix = if spec.fifo { ".fifo" } else { "" };
    let dlq = queue(
        sqs,
        &format!("{}{base}-dlq{suffix}", spec.prefix),
        spec.fifo,
        None,
    )
    .await?;
    let main = queue(
        sqs,
        &format!("{}{base}{suffix}", spec.prefix),
        spec.fifo,
        Some((&dlq.arn, spec.max_receive_count)),
    )
    .await?;
    Ok((main, dlq))
}

pub async fn provision(
    sqs: &aws_sdk_sqs::Client,
    sns: &aws_sdk_sns::Client,
    s3: &aws_sdk_s3::Client,
    spec: &ProvisionSpec,
) -> Result<Provisioned, ProvisionError> {
    let (updates, updates_dlq) = queue_with_dlq(sqs, "projection-updates", spec).await?;
    let (lifecycle, lifecycle_dlq) = queue_with_dlq(sqs, "run-lifecycle", spec).await?;
    let suffix = if spec.fifo { ".fifo" } else { "" };
    let topic_name = format!("{}run-requests{suffix}", spec.prefix);
    let mut topic = sns.create_topic().name(&topic_name);
    if spec.fifo {
        topic = topic
            .attributes("FifoTopic", "true")
            .attributes("ContentBasedDeduplication", "false");
    }
    let topic_arn = topic
        .send()
        .await
        .map_err(|e| {
            fail(format!("topic {topic_name}"))(
                aws_sdk_sns::error::DisplayErrorContext(e).to_string(),
            )
        })?
        .topic_arn
        .ok_or_else(|| fail(format!("topic {topic_name}"))("no topic ARN returned".into()))?;
    let requests = queue(
        sqs,
        &format!("{}run-requests{suffix}", spec.prefix),
        spec.fifo,
        None,
    )
    .await?;
    // On AWS the queue must let the topic deliver to it.
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"},
                       "Action": "sqs:SendMessage", "Resource": requests.arn,
                       "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}}}]
    });
    sqs.set_queue_attributes()
        .queue_url(&requests.url)
        .attributes(QueueAttributeName::Policy, policy.to_string())
        .send()
        .await
        .map_err(|e| fail("run-requests queue policy")(ctx(e)))?;
    sns.subscribe()
        .topic_arn(&topic_arn)
        .protocol("sqs")
        .endpoint(&requests.arn)
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .map_err(|e| {
            fail("run-requests subscription")(
                aws_sdk_sns::error::DisplayErrorContext(e).to_string(),
            )
        })?;
    bucket(s3, &spec.output_bucket).await?;
    Ok(Provisioned {
        projection_updates_queue_url: updates.url,
        projection_updates_dlq_url: updates_dlq.url,
        run_lifecycle_queue_url: lifecycle.url,
        run_lifecycle_dlq_url: lifecycle_dlq.url,
        run_requests_topic_arn: topic_arn,
        run_requests_queue_url: requests.url,
        output_bucket: spec.output_bucket.clone(),
    })
}

async fn bucket(s3: &aws_sdk_s3::Client, name: &str) -> Result<(), ProvisionError> {
    let region = s3
        .config()
        .region()
        .map(|r| r.to_string())
        .unwrap_or_else(|| "us-east-1".into());
    let mut req = s3.create_bucket().bucket(name);
    if region != "us-east-1" {
        req = req.create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(
                    region.as_str(),
                ))
                .build(),
        );
    }
    match req.send().await {
        Ok(_) => Ok(()),
        Err(e) => {
            let text = aws_sdk_s3::error::DisplayErrorContext(&e).to_string();
            if text.contains("BucketAlreadyOwnedByYou") {
                Ok(())
            } else {
                Err(fail(format!("bucket {name}"))(text))
            }
        }
    }
}
