# One-off tasks run by hand (or by a release pipeline) with `aws ecs
# run-task`: `orchestrator migrate` (the schema, and the worker and API roles
# with their passwords and grants) and `orchestrator catalog apply` (the
# catalog file uploaded to the output bucket). Both connect as the schema
# owner. The exact commands are outputs (migrate_command,
# catalog_apply_command) and docs/deploy.md.

locals {
  oneoff = {
    migrate = {
      command = ["orchestrator", "migrate"]
      environment = {
        DATABASE_URL         = local.database_url.owner
        DATABASE_WORKER_ROLE = local.db.worker_user
        DATABASE_API_ROLE    = local.db.api_user
      }
      secrets = [
        { name = "DATABASE_PASSWORD", valueFrom = local.password_secret.owner },
        { name = "DATABASE_WORKER_PASSWORD", valueFrom = local.password_secret.worker },
        { name = "DATABASE_API_PASSWORD", valueFrom = local.password_secret.api },
      ]
    }
    catalog-apply = {
      command = ["orchestrator", "catalog", "apply", "s3://${var.messaging.output_bucket}/${var.catalog_key}"]
      environment = {
        DATABASE_URL = local.database_url.owner
      }
      secrets = [{ name = "DATABASE_PASSWORD", valueFrom = local.password_secret.owner }]
    }
  }
  network_configuration = "awsvpcConfiguration={subnets=[${join(",", var.subnet_ids)}],securityGroups=[${join(",", var.security_group_ids)}],assignPublicIp=${var.assign_public_ip ? "ENABLED" : "DISABLED"}}"
}

resource "aws_cloudwatch_log_group" "oneoff" {
  name              = "/ecs/${var.prefix}orchestrator-oneoff"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

# Reads the catalog file, nothing else.
resource "aws_iam_role" "oneoff" {
  name               = "${var.prefix}orchestrator-oneoff"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "oneoff" {
  statement {
    sid       = "ReadTheCatalog"
    actions   = ["s3:GetObject"]
    resources = ["${var.messaging.output_bucket_arn}/${var.catalog_key}"]
  }
  statement {
    sid       = "DecryptTheCatalog"
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]
  }
}

resource "aws_iam_role_policy" "oneoff" {
  name   = "${var.prefix}orchestrator-oneoff"
  role   = aws_iam_role.oneoff.id
  policy = data.aws_iam_policy_document.oneoff.json
}

resource "aws_ecs_task_definition" "oneoff" {
  for_each                 = local.oneoff
  family                   = "${var.prefix}orchestrator-${each.key}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = 256
  memory                   = 512
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.oneoff.arn
  container_definitions = jsonencode([{
    name                   = each.key
    image                  = var.image
    command                = each.value.command
    essential              = true
    environment            = [for k in sort(keys(each.value.environment)) : { name = k, value = each.value.environment[k] }]
    secrets                = each.value.secrets
    readonlyRootFilesystem = true
    user                   = "65532"
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.oneoff.name
        awslogs-region        = var.region
        awslogs-stream-prefix = each.key
      }
    }
  }])
  tags = var.tags
}
