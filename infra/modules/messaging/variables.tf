variable "prefix" {
  description = "Prefix of every resource name, e.g. \"prod-\"."
  type        = string
}

variable "fifo" {
  description = "FIFO run-requests topic and queues (messageGroupId = metric code, dedup id = run id)."
  type        = bool
  default     = false
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
