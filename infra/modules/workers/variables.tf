variable "prefix" {
  type = string
}

variable "region" {
  type = string
}

variable "image" {
  description = "The workers' image (one image, three binaries; see Dockerfile)."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets for the tasks (they need PostgreSQL and the AWS APIs, nothing inbound)."
  type        = list(string)
}

variable "security_group_ids" {
  type = list(string)
}

variable "assign_public_ip" {
  type    = bool
  default = false
}

variable "database" {
  description = "Where PostgreSQL is and which role each process connects as; passwords come from Secrets Manager (owner_secret_arn: JSON with a password key, as RDS keeps its master secret; the roles' secrets: the password alone). Connections are TLS with verify-full against sslrootcert, a path in the image."
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
}

variable "kms_key_arn" {
  description = "The stack's key: log groups are encrypted with it, and the tasks use it for the encrypted queues, topics, bucket and secrets."
  type        = string
}

variable "catalog_key" {
  description = "Where the catalog-apply task reads the catalog: this key of the output bucket (docs/deploy.md)."
  type        = string
  default     = "catalog/catalog.yaml"
}

variable "messaging" {
  description = "Outputs of the messaging module."
  type = object({
    projection_updates_queue_url  = string
    projection_updates_queue_arn  = string
    projection_updates_queue_name = string
    projection_updates_dlq_url    = string
    projection_updates_dlq_arn    = string
    run_lifecycle_queue_url       = string
    run_lifecycle_queue_arn       = string
    run_lifecycle_queue_name      = string
    run_lifecycle_dlq_url         = string
    run_lifecycle_dlq_arn         = string
    run_requests_topic_arn        = string
    alerts_topic_arn              = string
    output_bucket                 = string
    output_bucket_arn             = string
  })
}

variable "inbound_payload_bucket_arns" {
  description = "Buckets producers offload large inbound messages to (Extended Client pointers); read-only."
  type        = list(string)
  default     = []
}

variable "settings" {
  description = "Settings shared by both workers (WORKER_CONCURRENCY, MAX_RECEIVE_COUNT, OUTPUT_PREFIX, RUN_*_TIMEOUT_SECS, ...)."
  type        = map(string)
  default     = {}
}

variable "ops_port" {
  type    = number
  default = 9090
}

variable "workers" {
  description = "Per worker: task size and scaling on its queue's visible messages."
  nullable    = false # a null from the caller means these defaults
  type = map(object({
    cpu              = number
    memory           = number
    min_count        = number
    max_count        = number
    backlog_per_task = number
  }))
  default = {
    projection-update-worker = { cpu = 256, memory = 512, min_count = 1, max_count = 10, backlog_per_task = 500 }
    run-lifecycle-worker     = { cpu = 256, memory = 512, min_count = 1, max_count = 4, backlog_per_task = 1000 }
  }
}

variable "log_retention_days" {
  type    = number
  default = 365
}

variable "tags" {
  type    = map(string)
  default = {}
}

variable "api" {
  description = "The operator API and console (`orchestrator serve`) as an internal service: no public IP; reach it through a VPN, a bastion or an internal load balancer. token_secret_arn: a Secrets Manager secret holding API_TOKEN (actions stay off without it)."
  nullable    = false
  type = object({
    enabled            = optional(bool, false)
    port               = optional(number, 8080)
    cpu                = optional(number, 256)
    memory             = optional(number, 512)
    desired_count      = optional(number, 1)
    token_secret_arn   = optional(string)
    security_group_ids = optional(list(string))
    # API_AUTH: "actions" (the token guards cancel and trigger) or "all"
    # (reads too; needs token_secret_arn).
    auth = optional(string, "actions")
    # An internal HTTPS Application Load Balancer in front of the service,
    # which signs people in before any request reaches it: through an
    # Amazon Cognito user pool or any OIDC provider (Okta, Entra ID, Google).
    # The client secret of an OIDC provider is var.api_oidc_client_secret.
    load_balancer = optional(object({
      subnet_ids         = list(string)
      security_group_ids = list(string)
      certificate_arn    = string
      cognito = optional(object({
        user_pool_arn       = string
        user_pool_client_id = string
        user_pool_domain    = string
      }))
      oidc = optional(object({
        issuer                 = string
        authorization_endpoint = string
        token_endpoint         = string
        user_info_endpoint     = string
        client_id              = string
      }))
    }))
  })
  default = {}
  validation {
    condition     = contains(["actions", "all"], var.api.auth)
    error_message = "api.auth must be \"actions\" or \"all\"."
  }
  validation {
    condition     = var.api.auth != "all" || var.api.token_secret_arn != null
    error_message = "api.auth = \"all\" needs api.token_secret_arn: every read would be refused without a token."
  }
  validation {
    condition     = var.api.load_balancer == null || (try(var.api.load_balancer.cognito, null) == null) != (try(var.api.load_balancer.oidc, null) == null)
    error_message = "api.load_balancer needs exactly one of cognito or oidc: the load balancer signs people in before forwarding."
  }
}

variable "api_oidc_client_secret" {
  description = "The OIDC client secret for api.load_balancer.oidc (kept out of the api object so that plans hide it)."
  type        = string
  default     = null
  sensitive   = true
}
