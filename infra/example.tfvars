prefix = "prod-"
region = "us-east-1"
# An existing VPC and two private subnets (NAT or VPC endpoints to the AWS
# APIs); or create_vpc = true for a new VPC with endpoints and no internet.
vpc_id     = "vpc-0123456789abcdef0"
subnet_ids = ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]
image_tag  = "1.0.0"
database = {
  instance_class = "db.t4g.medium"
  multi_az       = true
}
# The metric runner's and the producer's roles use the encrypted queues and topic.
kms_key_users = ["arn:aws:iam::123456789012:role/metric-runner", "arn:aws:iam::123456789012:role/ingestor"]
alert_emails  = ["data-oncall@example.com"]
worker_settings = {
  WORKER_CONCURRENCY = "16"
}
console_cidrs = ["10.0.0.0/8"]
# The operator API and console (`orchestrator serve`), internal only; the
# actions' token comes from this secret.
api = {
  enabled          = true
  token_secret_arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:metric-orchestrator/api-token"
  # An internal HTTPS load balancer that signs people in before forwarding
  # (docs/operations.md, "Exposing the API"):
  # load_balancer = {
  #   certificate_arn = "arn:aws:acm:us-east-1:123456789012:certificate/00000000-0000-0000-0000-000000000000"
  #   cognito = {
  #     user_pool_arn       = "arn:aws:cognito-idp:us-east-1:123456789012:userpool/us-east-1_example"
  #     user_pool_client_id = "exampleclientid"
  #     user_pool_domain    = "metric-orchestrator"
  #   }
  # }
}
