# The metric orchestrator on AWS: messaging (queues, DLQs, topic, runner
# subscription, bucket) and the two workers on ECS Fargate.
#
#   terraform init && terraform apply -var-file=prod.tfvars
#
# Without a registry: terraform init -plugin-dir=<a provider mirror>

provider "aws" {
  region = var.region
  default_tags {
    tags = merge({ app = "metric-orchestrator" }, var.tags)
  }
}

module "messaging" {
  source                        = "./modules/messaging"
  prefix                        = var.prefix
  fifo                          = var.fifo
  max_receive_count             = var.max_receive_count
  output_bucket                 = var.output_bucket
  fifo_run_requests             = var.fifo_run_requests
  fifo_projection_updates       = var.fifo_projection_updates
  fifo_run_lifecycle            = var.fifo_run_lifecycle
  run_requests_topic_arn        = var.run_requests_topic_arn
  run_lifecycle_topic_arns      = var.run_lifecycle_topic_arns
  projection_updates_topic_arns = var.projection_updates_topic_arns
  raw_message_delivery          = var.raw_message_delivery
  existing_output_bucket        = var.existing_output_bucket
  alert_emails                  = var.alert_emails
  max_message_age_seconds       = var.max_message_age_seconds
}

module "workers" {
  source                      = "./modules/workers"
  prefix                      = var.prefix
  region                      = var.region
  image                       = var.image
  subnet_ids                  = var.subnet_ids
  security_group_ids          = var.security_group_ids
  database_url_secret_arn     = var.database_url_secret_arn
  inbound_payload_bucket_arns = var.inbound_payload_bucket_arns
  messaging                   = module.messaging
  settings                    = var.worker_settings
  workers                     = var.workers
  api                         = var.api
  api_oidc_client_secret      = var.api_oidc_client_secret
}
