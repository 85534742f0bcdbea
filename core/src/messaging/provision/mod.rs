//! Idempotent creation of the messaging resources (`orchestrator provision`): the
//! projection-updates, run-lifecycle and runner's run-requests queues, each
//! with its DLQ and redrive policy, the run-requests topic (or an existing
//! one), the subscriptions (the runner's queue to the run-requests topic,
//! and, for a drop-in switch from metrics-engine-cp, our queues to the
//! runner's and the producer's existing topics) with the queue policies SNS
//! needs on AWS, and the output bucket (or an existing one).

mod spec;

use aws_sdk_sqs::types::QueueAttributeName;

pub use spec::{check, is_fifo_arn, queue_name, queue_policy, Fifo, ProvisionSpec, RawDelivery};

/// One SNS subscription made (or found) by provisioning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub topic_arn: String,
    pub queue_url: String,
    pub raw: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provisioned {
    pub projection_updates_queue_url: String,
    pub projection_updates_dlq_url: String,
    pub run_lifecycle_queue_url: String,
    pub run_lifecycle_dlq_url: String,
    pub run_requests_topic_arn: String,
    pub run_requests_queue_url: String,
    pub run_requests_dlq_url: String,
    /// The alerts topic, and a queue subscribed to it (raw delivery) from
    /// which an operator or a test reads what the fleet alerted.
    pub alerts_topic_arn: String,
    pub alerts_queue_url: String,
    pub output_bucket: String,
    pub subscriptions: Vec<Subscription>,
    /// Existing resources used as they are (topic, bucket).
    pub reused: Vec<String>,
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
            ("ALERTS_TOPIC_ARN", self.alerts_topic_arn.clone()),
            ("ALERTS_QUEUE_URL", self.alerts_queue_url.clone()),
            ("OUTPUT_BUCKET", self.output_bucket.clone()),
        ]
    }

    /// Every queue, DLQs included (for `--purge`).
    pub fn queue_urls(&self) -> [&str; 7] {
        [
            &self.alerts_queue_url,
            &self.projection_updates_queue_url,
            &self.projection_updates_dlq_url,
            &self.run_lifecycle_queue_url,
            &self.run_lifecycle_dlq_url,
            &self.run_requests_queue_url,
            &self.run_requests_dlq_url,
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

fn sns_ctx<E: std::error::Error + 'static, R: std::fmt::Debug>(
    e: aws_smithy_runtime_api::client::result::SdkError<E, R>,
) -> String {
    aws_sdk_sns::error::DisplayErrorContext(e).to_string()
}

/// Creates the queue (or finds it: creating an existing queue with the same
/// attributes is a no-op) and sets its redrive policy separately, so that a
/// queue made by an older provision without one gets it.
async fn queue(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    fifo: bool,
    redrive_to: Option<(&str, u32)>,
) -> Result<Queue, ProvisionError> {
    let what = format!("queue {name}");
    let mut req = sqs.create_queue().queue_name(name);
    if fifo {
        req = req
            .attributes(QueueAttributeName::FifoQueue, "true")
            .attributes(QueueAttributeName::ContentBasedDeduplication, "false");
    }
    let url = req
        .send()
        .await
        .map_err(|e| fail(&what)(ctx(e)))?
        .queue_url
        .ok_or_else(|| fail(&what)("no queue URL returned".into()))?;
    if let Some((dlq_arn, max)) = redrive_to {
        let policy =
            serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max.to_string()});
        sqs.set_queue_attributes()
            .queue_url(&url)
            .attributes(QueueAttributeName::RedrivePolicy, policy.to_string())
            .send()
            .await
            .map_err(|e| fail(format!("redrive policy of {name}"))(ctx(e)))?;
    }
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| fail(&what)(ctx(e)))?
        .attributes
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .ok_or_else(|| fail(&what)("no queue ARN returned".into()))?;
    Ok(Queue { url, arn })
}

/// A queue and its DLQ, wired by a RedrivePolicy.
async fn queue_with_dlq(
    sqs: &aws_sdk_sqs::Client,
    base: &str,
    fifo: bool,
    spec: &ProvisionSpec,
) -> Result<(Queue, Queue), ProvisionError> {
    let dlq = queue(
        sqs,
        &queue_name(&spec.prefix, &format!("{base}-dlq"), fifo),
        fifo,
        None,
    )
    .await?;
    let main = queue(
        sqs,
        &queue_name(&spec.prefix, base, fifo),
        fifo,
        Some((&dlq.arn, spec.max_receive_count)),
    )
    .await?;
    Ok((main, dlq))
}

async fn create_topic(
    sns: &aws_sdk_sns::Client,
    name: &str,
    fifo: bool,
) -> Result<String, ProvisionError> {
    let mut topic = sns.create_topic().name(name);
    if fifo {
        topic = topic
            .attributes("FifoTopic", "true")
            .attributes("ContentBasedDeduplication", "false");
    }
    topic
        .send()
        .await
        .map_err(|e| fail(format!("topic {name}"))(sns_ctx(e)))?
        .topic_arn
        .ok_or_else(|| fail(format!("topic {name}"))("no topic ARN returned".into()))
}

/// An existing topic, named by ARN: it must exist (nothing is created).
async fn existing_topic(sns: &aws_sdk_sns::Client, arn: &str) -> Result<(), ProvisionError> {
    sns.get_topic_attributes()
        .topic_arn(arn)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| fail(format!("existing topic {arn}"))(sns_ctx(e)))
}

/// Lets `topics` deliver to `queue` (its policy) and subscribes it to each,
/// raw or enveloped; an existing subscription gets the delivery asked for.
async fn subscribe(
    sqs: &aws_sdk_sqs::Client,
    sns: &aws_sdk_sns::Client,
    queue: &Queue,
    topics: &[String],
    raw: bool,
) -> Result<Vec<Subscription>, ProvisionError> {
    if topics.is_empty() {
        return Ok(Vec::new());
    }
    sqs.set_queue_attributes()
        .queue_url(&queue.url)
        .attributes(
            QueueAttributeName::Policy,
            queue_policy(&queue.arn, topics).to_string(),
        )
        .send()
        .await
        .map_err(|e| fail(format!("policy of {}", queue.url))(ctx(e)))?;
    let mut made = Vec::new();
    for topic in topics {
        let what = format!("subscription of {} to {topic}", queue.url);
        let arn = match sns
            .subscribe()
            .topic_arn(topic)
            .protocol("sqs")
            .endpoint(&queue.arn)
            .attributes("RawMessageDelivery", raw.to_string())
            .return_subscription_arn(true)
            .send()
            .await
        {
            Ok(out) => out.subscription_arn,
            Err(e) => {
                let text = sns_ctx(e);
                if !text.contains("already exists") {
                    return Err(fail(&what)(text));
                }
                // Subscribed before with the other delivery: change it.
                let arn = find_subscription(sns, topic, &queue.arn)
                    .await?
                    .ok_or_else(|| fail(&what)(text))?;
                sns.set_subscription_attributes()
                    .subscription_arn(&arn)
                    .attribute_name("RawMessageDelivery")
                    .attribute_value(raw.to_string())
                    .send()
                    .await
                    .map_err(|e| fail(&what)(sns_ctx(e)))?;
                Some(arn)
            }
        };
        arn.ok_or_else(|| fail(&what)("no subscription ARN returned".into()))?;
        made.push(Subscription {
            topic_arn: topic.clone(),
            queue_url: queue.url.clone(),
            raw,
        });
    }
    Ok(made)
}

async fn find_subscription(
    sns: &aws_sdk_sns::Client,
    topic: &str,
    queue_arn: &str,
) -> Result<Option<String>, ProvisionError> {
    let mut token = None;
    loop {
        let page = sns
            .list_subscriptions_by_topic()
            .topic_arn(topic)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| fail(format!("subscriptions of {topic}"))(sns_ctx(e)))?;
        if let Some(s) = page
            .subscriptions()
            .iter()
            .find(|s| s.endpoint() == Some(queue_arn))
        {
            return Ok(s.subscription_arn().map(str::to_string));
        }
        token = page.next_token;
        if token.is_none() {
            return Ok(None);
        }
    }
}

pub async fn provision(
    sqs: &aws_sdk_sqs::Client,
    sns: &aws_sdk_sns::Client,
    s3: &aws_sdk_s3::Client,
    spec: &ProvisionSpec,
) -> Result<Provisioned, ProvisionError> {
    check(spec).map_err(|problems| fail("the requested wiring")(problems.join("; ")))?;
    let mut reused = Vec::new();
    let (updates, updates_dlq) = queue_with_dlq(
        sqs,
        "projection-updates",
        spec.fifo.projection_updates,
        spec,
    )
    .await?;
    let (lifecycle, lifecycle_dlq) =
        queue_with_dlq(sqs, "run-lifecycle", spec.fifo.run_lifecycle, spec).await?;
    let topic_arn = match &spec.run_requests_topic_arn {
        Some(arn) => {
            existing_topic(sns, arn).await?;
            reused.push(format!("topic {arn}"));
            arn.clone()
        }
        None => {
            let name = queue_name(&spec.prefix, "run-requests", spec.fifo.run_requests);
            create_topic(sns, &name, spec.fifo.run_requests).await?
        }
    };
    let (requests, requests_dlq) =
        queue_with_dlq(sqs, "run-requests", spec.fifo.run_requests, spec).await?;
    let mut subscriptions = subscribe(
        sqs,
        sns,
        &requests,
        std::slice::from_ref(&topic_arn),
        spec.raw.run_requests,
    )
    .await?;
    subscriptions.extend(
        subscribe(
            sqs,
            sns,
            &lifecycle,
            &spec.run_lifecycle_topic_arns,
            spec.raw.run_lifecycle,
        )
        .await?,
    );
    subscriptions.extend(
        subscribe(
            sqs,
            sns,
            &updates,
            &spec.projection_updates_topic_arns,
            spec.raw.projection_updates,
        )
        .await?,
    );
    let alerts_topic_arn =
        create_topic(sns, &queue_name(&spec.prefix, "alerts", false), false).await?;
    let alerts = queue(sqs, &queue_name(&spec.prefix, "alerts", false), false, None).await?;
    subscriptions.extend(
        subscribe(
            sqs,
            sns,
            &alerts,
            std::slice::from_ref(&alerts_topic_arn),
            true,
        )
        .await?,
    );
    if bucket(s3, &spec.output_bucket).await? {
        reused.push(format!("bucket {}", spec.output_bucket));
    }
    Ok(Provisioned {
        projection_updates_queue_url: updates.url,
        projection_updates_dlq_url: updates_dlq.url,
        run_lifecycle_queue_url: lifecycle.url,
        run_lifecycle_dlq_url: lifecycle_dlq.url,
        run_requests_topic_arn: topic_arn,
        run_requests_queue_url: requests.url,
        run_requests_dlq_url: requests_dlq.url,
        alerts_topic_arn,
        alerts_queue_url: alerts.url,
        output_bucket: spec.output_bucket.clone(),
        subscriptions,
        reused,
    })
}

/// Uses the bucket if it exists (returns true), else creates it.
async fn bucket(s3: &aws_sdk_s3::Client, name: &str) -> Result<bool, ProvisionError> {
    if s3.head_bucket().bucket(name).send().await.is_ok() {
        return Ok(true);
    }
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
        Ok(_) => Ok(false),
        Err(e) => {
            let text = aws_sdk_s3::error::DisplayErrorContext(&e).to_string();
            if text.contains("BucketAlreadyOwnedByYou") {
                Ok(true)
            } else {
                Err(fail(format!("bucket {name}"))(text))
            }
        }
    }
}
