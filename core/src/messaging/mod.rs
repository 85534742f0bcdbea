//! AWS messaging: the SQS consumer runtime, the SNS run-request publisher,
//! and S3 for payloads too large for a message (AWS Extended Client format).

pub mod provision;
pub mod publisher;
pub mod s3;
pub mod sns;
pub mod sqs;

/// AWS clients a worker uses.
#[derive(Clone)]
pub struct AwsClients {
    pub sqs: aws_sdk_sqs::Client,
    pub sns: aws_sdk_sns::Client,
    pub s3: aws_sdk_s3::Client,
}

impl AwsClients {
    /// Clients configured from the environment (see [`aws_config`]).
    pub async fn from_env() -> Self {
        let config = aws_config().await;
        Self {
            sqs: aws_sdk_sqs::Client::new(&config),
            sns: aws_sdk_sns::Client::new(&config),
            s3: s3_client(&config),
        }
    }
}

/// Bounds on every AWS call: an endpoint that accepts the connection and
/// never answers must not hold a message, a slot or a shutdown forever. One
/// attempt may take the longest long poll (20 s) and some; the SDK's retries
/// of a call share the operation's bound.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
pub const ATTEMPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
pub const OPERATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Builds the AWS configuration from the environment (`AWS_REGION`,
/// `AWS_ENDPOINT_URL` for LocalStack, credentials), with the timeouts above.
pub async fn aws_config() -> aws_config::SdkConfig {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .build();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(timeouts)
        .load()
        .await
}

/// S3 clients against LocalStack need path-style addressing (no bucket DNS).
pub fn s3_client(config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn every_aws_call_is_bounded_in_time() {
        let config = super::aws_config().await;
        let t = config.timeout_config().expect("timeouts are set");
        assert_eq!(t.connect_timeout(), Some(super::CONNECT_TIMEOUT));
        assert_eq!(t.operation_attempt_timeout(), Some(super::ATTEMPT_TIMEOUT));
        assert_eq!(t.operation_timeout(), Some(super::OPERATION_TIMEOUT));
        // An attempt outlasts the longest long poll (20 s) it must wait through.
        assert!(super::ATTEMPT_TIMEOUT > std::time::Duration::from_secs(20));
    }
}
