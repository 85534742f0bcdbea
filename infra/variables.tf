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
