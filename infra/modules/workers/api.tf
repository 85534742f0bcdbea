# `orchestrator serve` (operator API and console) as an internal ECS service:
# no public IP, reachable only from the security groups given, with the
# actions' token from Secrets Manager. Off unless var.api.enabled.

locals {
  api_enabled = var.api.enabled
  api_environment = merge(
    {
      API_ADDR               = "0.0.0.0:${var.api.port}"
      OUTPUT_BUCKET          = var.messaging.output_bucket
      RUN_REQUESTS_TOPIC_ARN = var.messaging.run_requests_topic_arn
      LOG_FORMAT             = "json"
      RUST_LOG               = "info"
      AWS_REGION             = var.region
    },
    var.settings,
  )
  api_secrets = concat(
    [{ name = "DATABASE_URL", valueFrom = var.database_url_secret_arn }],
    var.api.token_secret_arn == null ? [] : [{ name = "API_TOKEN", valueFrom = var.api.token_secret_arn }],
  )
}

resource "aws_cloudwatch_log_group" "api" {
  count             = local.api_enabled ? 1 : 0
  name              = "/ecs/${var.prefix}orchestrator-serve"
  retention_in_days = var.log_retention_days
  tags              = var.tags
}

# The API reads and writes PostgreSQL only: its task role has no AWS permission.
resource "aws_iam_role" "api" {
  count              = local.api_enabled ? 1 : 0
  name               = "${var.prefix}orchestrator-serve"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "read_api_token" {
  count = local.api_enabled && var.api.token_secret_arn != null ? 1 : 0
  statement {
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [var.api.token_secret_arn]
  }
}

resource "aws_iam_role_policy" "read_api_token" {
  count  = length(data.aws_iam_policy_document.read_api_token)
  name   = "${var.prefix}read-api-token"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.read_api_token[0].json
}

resource "aws_ecs_task_definition" "api" {
  count                    = local.api_enabled ? 1 : 0
  family                   = "${var.prefix}orchestrator-serve"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.api.cpu
  memory                   = var.api.memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.api[0].arn
  container_definitions = jsonencode([{
    name         = "orchestrator-serve"
    image        = var.image
    command      = ["orchestrator", "serve"]
    essential    = true
    stopTimeout  = 30
    portMappings = [{ containerPort = var.api.port, protocol = "tcp" }]
    environment  = [for k in sort(keys(local.api_environment)) : { name = k, value = local.api_environment[k] }]
    secrets      = local.api_secrets
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.api[0].name
        awslogs-region        = var.region
        awslogs-stream-prefix = "orchestrator-serve"
      }
    }
  }])
  tags = var.tags
}

resource "aws_ecs_service" "api" {
  count           = local.api_enabled ? 1 : 0
  name            = "orchestrator-serve"
  cluster         = aws_ecs_cluster.this.id
  task_definition = aws_ecs_task_definition.api[0].arn
  launch_type     = "FARGATE"
  desired_count   = var.api.desired_count
  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = coalesce(var.api.security_group_ids, var.security_group_ids)
    assign_public_ip = false # internal only
  }
  tags = var.tags
}
