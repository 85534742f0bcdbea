# The messaging part only, applied to LocalStack (no ECS there): the test
# tests/it/terraform.rs applies this and runs the workers against its outputs.
#
#   terraform init [-plugin-dir=$TF_PLUGIN_DIR] && terraform apply -var prefix=dev-

variable "prefix" {
  type = string
}

variable "fifo" {
  type    = bool
  default = false
}

variable "fifo_run_requests" {
  description = "FIFO run-requests topic and runner queue; null follows `fifo`."
  type        = bool
  default     = null
}

variable "fifo_projection_updates" {
  description = "FIFO projection-updates queue; null follows `fifo` (topics it is subscribed to decide)."
  type        = bool
  default     = null
}

variable "fifo_run_lifecycle" {
  description = "FIFO run-lifecycle queue; null follows `fifo` (topics it is subscribed to decide)."
  type        = bool
  default     = null
}

variable "run_requests_topic_arn" {
  description = "Reuse this run-requests topic instead of creating one (e.g. the one metrics-engine-cp published to)."
  type        = string
  default     = null
}

variable "run_lifecycle_topic_arns" {
  description = "The runner's lifecycle topics (metrics-engine--dp-worker publishes started, heartbeat and completed to three topics)."
  type        = list(string)
  default     = []
}

variable "projection_updates_topic_arns" {
  description = "The producer's topics (ingestor-reader-v3 publishes projection_update to a standard topic)."
  type        = list(string)
  default     = []
}

variable "raw_message_delivery" {
  description = "Raw or SNS-enveloped delivery per subscription: { run_requests, run_lifecycle, projection_updates }, each default true."
  type = object({
    run_requests       = optional(bool, true)
    run_lifecycle      = optional(bool, true)
    projection_updates = optional(bool, true)
  })
  default = {}
}

variable "existing_output_bucket" {
  description = "Use this existing bucket as OUTPUT_BUCKET instead of creating one."
  type        = string
  default     = null
}

variable "endpoint" {
  type    = string
  default = "http://127.0.0.1:4566"
}

provider "aws" {
  region                      = "us-east-1"
  access_key                  = "test"
  secret_key                  = "test"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_requesting_account_id  = true
  s3_use_path_style           = true
  endpoints {
    sqs            = var.endpoint
    sns            = var.endpoint
    s3             = var.endpoint
    sts            = var.endpoint
    iam            = var.endpoint
    cloudwatch     = var.endpoint
    secretsmanager = var.endpoint
  }
}

module "messaging" {
  source                        = "../modules/messaging"
  prefix                        = var.prefix
  fifo                          = var.fifo
  force_destroy_bucket          = true
  fifo_run_requests             = var.fifo_run_requests
  fifo_projection_updates       = var.fifo_projection_updates
  fifo_run_lifecycle            = var.fifo_run_lifecycle
  run_requests_topic_arn        = var.run_requests_topic_arn
  run_lifecycle_topic_arns      = var.run_lifecycle_topic_arns
  projection_updates_topic_arns = var.projection_updates_topic_arns
  raw_message_delivery          = var.raw_message_delivery
  existing_output_bucket        = var.existing_output_bucket
}

# The least-privilege roles' passwords, generated and written write-only as
# on AWS (tests/it/terraform.rs checks the state holds none of them).
module "role_passwords" {
  source = "../modules/role_passwords"
  prefix = var.prefix
}

output "role_password_secret_arns" {
  value = module.role_passwords.secret_arns
}

output "worker_environment" {
  value = module.messaging.worker_environment
}

output "run_requests_dlq_url" {
  value = module.messaging.run_requests_dlq_url
}

output "subscriptions" {
  value = module.messaging.subscriptions
}

output "alarm_names" {
  value = module.messaging.alarm_names
}
