# The workers' environment (docs/operations.md): everything but DATABASE_URL (a secret) and the AWS
# SDK's own variables. `terraform output -json worker_environment`.
output "worker_environment" {
  value = module.workers.environment
}

output "run_requests_queue_url" {
  description = "RUN_REQUESTS_QUEUE_URL: what a metric runner (or simulate-runner) reads."
  value       = module.messaging.run_requests_queue_url
}

output "cluster_name" { value = module.workers.cluster_name }
output "service_names" { value = module.workers.service_names }

output "api_url" {
  description = "The operator API and console behind the signing-in load balancer, when api.load_balancer is set."
  value       = module.workers.api_url
}

output "alerts_topic_arn" {
  description = "ALERTS_TOPIC_ARN: subscribe email, AWS Chatbot or PagerDuty here (docs/operations.md, \"Alerts\")."
  value       = module.messaging.alerts_topic_arn
}

output "ecr_repository_url" {
  description = "Push the image here (docs/deploy.md): <url>:<image_tag>."
  value       = aws_ecr_repository.image.repository_url
}

output "database_host" {
  value = local.database.host
}

output "migrate_command" {
  description = "Runs `orchestrator migrate` as a one-off task: the schema, the worker and API roles and their grants."
  value       = module.workers.oneoff_commands["migrate"]
}

output "catalog_apply_command" {
  description = "Runs `orchestrator catalog apply` on s3://<output bucket>/catalog/catalog.yaml as a one-off task."
  value       = module.workers.oneoff_commands["catalog-apply"]
}

output "catalog_location" {
  value = "s3://${module.messaging.output_bucket}/catalog/catalog.yaml"
}

output "kms_key_arn" {
  description = "The stack's key: grant the runner's and producer's roles kms:Decrypt and kms:GenerateDataKey on it (var.kms_key_users)."
  value       = aws_kms_key.main.arn
}
