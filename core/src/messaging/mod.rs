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

/// Builds the AWS configuration from the environment (`AWS_REGION`,
/// `AWS_ENDPOINT_URL` for LocalStack, credentials).
pub async fn aws_config() -> aws_config::SdkConfig {
    aws_config::load_from_env().await
}

/// S3 clients against LocalStack need path-style addressing (no bucket DNS).
pub fn s3_client(config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}
