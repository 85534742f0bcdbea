variable "prefix" {
  description = "Prefix of every resource name, e.g. \"prod-\"."
  type        = string
}

variable "fifo" {
  description = "FIFO for every resource whose kind is not set otherwise (messageGroupId = metric code, dedup id = run id on run requests)."
  type        = bool
  default     = false
}

variable "fifo_run_requests" {
  description = "FIFO run-requests topic and runner queue; null follows `fifo`. Ignored when run_requests_topic_arn is set (its name decides)."
  type        = bool
  default     = null
}

variable "fifo_projection_updates" {
  description = "FIFO projection-updates queue; null follows `fifo`. Ignored when subscribed to topics (their kind decides)."
  type        = bool
  default     = null
}

variable "fifo_run_lifecycle" {
  description = "FIFO run-lifecycle queue; null follows `fifo`. Ignored when subscribed to topics (their kind decides)."
  type        = bool
  default     = null
}

variable "run_requests_topic_arn" {
  description = "An existing run-requests topic to publish to (and subscribe the runner queue to), instead of creating one."
  type        = string
  default     = null
}

variable "run_lifecycle_topic_arns" {
  description = "Existing topics the metric runner publishes lifecycle events to (metrics-engine--dp-worker: started, heartbeat, completed); the run-lifecycle queue is subscribed to each."
  type        = list(string)
  default     = []
}

variable "projection_updates_topic_arns" {
  description = "Existing topics the producer publishes projection updates to (ingestor-reader-v3: a standard topic); the projection-updates queue is subscribed to each."
  type        = list(string)
  default     = []
}

variable "raw_message_delivery" {
  description = "Raw (true) or SNS-enveloped (false) delivery per subscription; the workers read both, a runner may not."
  type = object({
    run_requests       = optional(bool, true)
    run_lifecycle      = optional(bool, true)
    projection_updates = optional(bool, true)
  })
  default = {}
}

variable "existing_output_bucket" {
  description = "An existing bucket to use as OUTPUT_BUCKET instead of creating one."
  type        = string
  default     = null
}

variable "max_receive_count" {
  description = "Receives before SQS itself moves a message to its DLQ (the workers dead-letter earlier, at MAX_RECEIVE_COUNT)."
  type        = number
  default     = 10
}

variable "visibility_timeout_seconds" {
  description = "Queue default visibility; the workers renew it while a message is worked on."
  type        = number
  default     = 60
}

variable "message_retention_seconds" {
  type    = number
  default = 1209600 # 14 days, the SQS maximum: dead letters wait for an operator.
}

variable "output_bucket" {
  description = "Bucket metric runners write to (and where oversized run requests are offloaded). Default: <prefix>metric-outputs."
  type        = string
  default     = null
}

variable "force_destroy_bucket" {
  description = "Allow destroying the bucket with objects in it (tests, demos)."
  type        = bool
  default     = false
}

variable "tags" {
  type    = map(string)
  default = {}
}

variable "alert_emails" {
  description = "Email addresses subscribed to the alerts topic (each confirms once)."
  type        = list(string)
  default     = []
}

variable "max_message_age_seconds" {
  description = "A queue's oldest message older than this for five minutes raises an alarm on the alerts topic."
  type        = number
  default     = 900
}

variable "kms_key_arn" {
  description = "Customer-managed KMS key for the queues, topics and bucket (the AWS root creates one). null: SQS-managed encryption, the AWS-managed SNS key, and SSE-S3 (LocalStack)."
  type        = string
  default     = null
}

variable "noncurrent_version_days" {
  description = "Days an overwritten or deleted object's old version is kept in the output bucket."
  type        = number
  default     = 30
}
