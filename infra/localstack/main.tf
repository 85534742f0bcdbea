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
    sqs = var.endpoint
    sns = var.endpoint
    s3  = var.endpoint
    sts = var.endpoint
    iam = var.endpoint
  }
}

module "messaging" {
  source               = "../modules/messaging"
  prefix               = var.prefix
  fifo                 = var.fifo
  force_destroy_bucket = true
}

output "worker_environment" {
  value = module.messaging.worker_environment
}
