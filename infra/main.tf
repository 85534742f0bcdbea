# The metric orchestrator on AWS, complete: network (an existing VPC, or a
# new one), KMS key, image repository, RDS PostgreSQL, messaging (queues,
# DLQs, topics, runner subscription, bucket, alarms) and the workers, the
# operator API and the one-off migrate / catalog-apply tasks on ECS Fargate.
#
#   terraform init && terraform apply -var-file=prod.tfvars
#
# then the steps of docs/deploy.md (push the image, run migrate, apply the
# catalog). Without a registry: terraform init -plugin-dir=<a provider mirror>

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
  kms_key_arn                   = aws_kms_key.main.arn
}

module "database" {
  count                 = var.existing_database == null ? 1 : 0
  source                = "./modules/database"
  prefix                = var.prefix
  subnet_ids            = local.subnet_ids
  security_group_ids    = [aws_security_group.database.id]
  kms_key_arn           = aws_kms_key.main.arn
  engine_version        = var.database.engine_version
  instance_class        = var.database.instance_class
  allocated_storage_gb  = var.database.allocated_storage_gb
  multi_az              = var.database.multi_az
  deletion_protection   = var.database.deletion_protection
  backup_retention_days = var.database.backup_retention_days
}

module "role_passwords" {
  count            = var.existing_database == null ? 1 : 0
  source           = "./modules/role_passwords"
  prefix           = var.prefix
  roles            = module.database[0].roles
  kms_key_arn      = aws_kms_key.main.arn
  password_version = var.database.role_password_version
}

locals {
  database = var.existing_database != null ? var.existing_database : {
    host              = module.database[0].host
    port              = module.database[0].port
    name              = module.database[0].name
    sslrootcert       = "/etc/ssl/certs/rds-global-bundle.pem"
    owner_user        = module.database[0].owner_user
    owner_secret_arn  = module.database[0].owner_secret_arn
    worker_user       = module.database[0].roles.worker
    worker_secret_arn = module.role_passwords[0].secret_arns.worker
    api_user          = module.database[0].roles.api
    api_secret_arn    = module.role_passwords[0].secret_arns.api
  }
  image = coalesce(var.image, "${aws_ecr_repository.image.repository_url}:${var.image_tag}")
  # The API's security groups are the stack's own; a load balancer given in
  # var.api gets the stack's load-balancer group.
  api = merge(var.api, {
    port               = var.api_port
    security_group_ids = [aws_security_group.api.id]
    load_balancer = try(var.api.load_balancer, null) == null ? null : merge(var.api.load_balancer, {
      subnet_ids         = try(var.api.load_balancer.subnet_ids, local.subnet_ids)
      security_group_ids = [aws_security_group.lb.id]
    })
  })
}

module "workers" {
  source                      = "./modules/workers"
  prefix                      = var.prefix
  region                      = var.region
  image                       = local.image
  subnet_ids                  = local.subnet_ids
  security_group_ids          = [aws_security_group.tasks.id]
  database                    = local.database
  kms_key_arn                 = aws_kms_key.main.arn
  inbound_payload_bucket_arns = var.inbound_payload_bucket_arns
  messaging                   = module.messaging
  settings                    = var.worker_settings
  workers                     = var.workers
  ops_port                    = var.ops_port
  api                         = local.api
  api_oidc_client_secret      = var.api_oidc_client_secret
}
