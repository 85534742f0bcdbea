prefix                  = "prod-"
image                   = "123456789012.dkr.ecr.us-east-1.amazonaws.com/metric-orchestrator:1.0.0"
subnet_ids              = ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]
security_group_ids      = ["sg-0123456789abcdef0"]
database_url_secret_arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:metric-orchestrator/database-url"
worker_settings = {
  WORKER_CONCURRENCY = "16"
}
# The operator API and console (`orchestrator serve`), internal only; the
# actions' token comes from this secret.
api = {
  enabled          = true
  token_secret_arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:metric-orchestrator/api-token"
  # An internal HTTPS load balancer that signs people in before forwarding
  # (docs/operations.md, "Exposing the API"):
  # load_balancer = {
  #   subnet_ids         = ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]
  #   security_group_ids = ["sg-0123456789abcdef1"]
  #   certificate_arn    = "arn:aws:acm:us-east-1:123456789012:certificate/00000000-0000-0000-0000-000000000000"
  #   cognito = {
  #     user_pool_arn       = "arn:aws:cognito-idp:us-east-1:123456789012:userpool/us-east-1_example"
  #     user_pool_client_id = "exampleclientid"
  #     user_pool_domain    = "metric-orchestrator"
  #   }
  # }
}
