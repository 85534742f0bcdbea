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
