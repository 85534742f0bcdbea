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

variable "image_tag" {
  description = "The tag pushed to the stack's ECR repository (docs/deploy.md); the image is <repository_url>:<image_tag>."
  type        = string
  default     = "latest"
}

variable "image" {
  description = "A full image reference instead of the stack's repository and image_tag."
  type        = string
  default     = null
}

variable "create_vpc" {
  description = "Create a VPC with two private subnets and VPC endpoints instead of using vpc_id and subnet_ids."
  type        = bool
  default     = false
}

variable "vpc_cidr" {
  description = "The new VPC's range, with create_vpc."
  type        = string
  default     = "10.40.0.0/16"
}

variable "vpc_id" {
  description = "The existing VPC (without create_vpc)."
  type        = string
  default     = null
}

variable "subnet_ids" {
  description = "Private subnets in two Availability Zones at least, for the tasks and the database (without create_vpc). They reach the AWS APIs through a NAT gateway or VPC endpoints."
  type        = list(string)
  default     = []
  validation {
    condition     = length(var.subnet_ids) == 0 || length(var.subnet_ids) >= 2
    error_message = "subnet_ids needs two subnets at least (in two Availability Zones): RDS requires it."
  }
}

variable "vpc_endpoints" {
  description = "Interface endpoints for SQS, SNS, Logs, ECR, Secrets Manager and KMS in an existing VPC (always on with create_vpc)."
  type        = bool
  default     = false
}

variable "ops_port" {
  description = "The workers' ops endpoints (/healthz, /readyz, /metrics), reachable from inside the VPC only."
  type        = number
  default     = 9090
}

variable "api_port" {
  type    = number
  default = 8080
}

variable "console_cidrs" {
  description = "Networks allowed to reach the console's load balancer on 443 (your VPN, office or bastion ranges)."
  type        = list(string)
  default     = []
}

variable "kms_key_users" {
  description = "IAM principals (the metric runner's and the producer's roles) that read or write the encrypted queues, topic and bucket."
  type        = list(string)
  default     = []
}

variable "database" {
  description = "The RDS instance: size, engine, availability and backups (docs/deploy.md, \"What it costs\")."
  type = object({
    engine_version        = optional(string, "16")
    instance_class        = optional(string, "db.t4g.medium")
    allocated_storage_gb  = optional(number, 20)
    multi_az              = optional(bool, true)
    deletion_protection   = optional(bool, true)
    backup_retention_days = optional(number, 14)
    role_password_version = optional(number, 1)
  })
  default = {}
}

variable "existing_database" {
  description = "Use this PostgreSQL (for example the database metrics-engine-cp ran on, adopted in place) instead of creating one: host, port, name, sslrootcert (a path in the image), owner_user and owner_secret_arn (JSON with a password key), worker_user / worker_secret_arn, api_user / api_secret_arn (the passwords alone)."
  type = object({
    host              = string
    port              = number
    name              = string
    sslrootcert       = optional(string, "/etc/ssl/certs/rds-global-bundle.pem")
    owner_user        = string
    owner_secret_arn  = string
    worker_user       = string
    worker_secret_arn = string
    api_user          = string
    api_secret_arn    = string
  })
  default = null
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
  description = "The operator API and console as an internal ECS service: { enabled, cpu, memory, desired_count, token_secret_arn, auth (actions | all), load_balancer ({ subnet_ids (default: the stack's), certificate_arn, cognito | oidc }) }; off by default. Its security groups are the stack's. Its shape, defaults and checks are declared once, by modules/workers (variable \"api\"). See docs/operations.md, \"Exposing the API\"."
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
