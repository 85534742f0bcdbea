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
}
