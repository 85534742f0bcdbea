variable "region" {
  type    = string
  default = "us-east-1"
}

variable "prefix" {
  description = "Prefix of every resource name, e.g. \"prod-\"."
  type        = string
}

variable "fifo" {
  description = "FIFO run-requests topic and queues: the topic ARN then ends in .fifo and the workers set messageGroupId = metric code, messageDeduplicationId = run id."
  type        = bool
  default     = false
}

variable "max_receive_count" {
  type    = number
  default = 10
}

variable "output_bucket" {
  description = "OUTPUT_BUCKET; default <prefix>metric-outputs."
  type        = string
  default     = null
}

variable "image" {
  description = "Workers' image, e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com/metric-orchestrator:1.0.0."
  type        = string
}

variable "subnet_ids" {
  type = list(string)
}

variable "security_group_ids" {
  type = list(string)
}

variable "database_url_secret_arn" {
  description = "Secrets Manager secret holding DATABASE_URL."
  type        = string
}

variable "inbound_payload_bucket_arns" {
  type    = list(string)
  default = []
}

variable "worker_settings" {
  description = "Extra environment variables for both workers, e.g. { WORKER_CONCURRENCY = \"16\", RUN_HEARTBEAT_TIMEOUT_SECS = \"900\" }."
  type        = map(string)
  default     = {}
}

variable "workers" {
  description = "Per worker: cpu, memory, min_count, max_count, backlog_per_task; null keeps the defaults of modules/workers."
  type = map(object({
    cpu              = number
    memory           = number
    min_count        = number
    max_count        = number
    backlog_per_task = number
  }))
  default = null
}

variable "tags" {
  type    = map(string)
  default = {}
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

variable "api" {
  description = "The operator API and console as an internal ECS service: { enabled, port, cpu, memory, desired_count, token_secret_arn, security_group_ids, auth (actions | all), load_balancer ({ subnet_ids, security_group_ids, certificate_arn, cognito | oidc }) }; off by default. Its shape, defaults and checks are declared once, by modules/workers (variable \"api\"). See docs/operations.md, \"Exposing the API\"."
  type        = any
  default     = {}
}

variable "api_oidc_client_secret" {
  description = "The OIDC client secret for api.load_balancer.oidc."
  type        = string
  default     = null
  sensitive   = true
}

variable "alert_emails" {
  description = "Email addresses subscribed to the alerts topic (docs/operations.md, \"Alerts\")."
  type        = list(string)
  default     = []
}

variable "max_message_age_seconds" {
  description = "Alarm when a queue's oldest message is older than this for five minutes."
  type        = number
  default     = 900
}
