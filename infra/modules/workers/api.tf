# `orchestrator serve` (operator API and console) as an internal ECS service:
# no public IP, reachable only from the security groups given, with the
# actions' token from Secrets Manager. Off unless var.api.enabled. With
# var.api.load_balancer, an internal HTTPS load balancer signs people in
# (Cognito or OIDC) before forwarding to it; see docs/operations.md,
# "Exposing the API".

locals {
  api_enabled = var.api.enabled
  api_environment = merge(
    {
      API_ADDR               = "0.0.0.0:${var.api.port}"
      API_AUTH               = var.api.auth
      OUTPUT_BUCKET          = var.messaging.output_bucket
      RUN_REQUESTS_TOPIC_ARN = var.messaging.run_requests_topic_arn
      LOG_FORMAT             = "json"
      RUST_LOG               = "info"
      AWS_REGION             = var.region
      DATABASE_URL           = local.database_url.api
    },
    # Behind the signing-in load balancer, actions are recorded as the
    # person it signed in (its signed identity is verified against it).
    local.api_lb ? { API_OIDC_SIGNER_ARN = aws_lb.api[0].arn } : {},
    var.settings,
  )
  api_secrets = concat(
    [{ name = "DATABASE_PASSWORD", valueFrom = local.password_secret.api }],
    var.api.token_secret_arn == null ? [] : [{ name = "API_TOKEN", valueFrom = var.api.token_secret_arn }],
  )
}

resource "aws_cloudwatch_log_group" "api" {
  count             = local.api_enabled ? 1 : 0
  name              = "/ecs/${var.prefix}orchestrator-serve"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
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
    healthCheck = merge(local.health_check, {
      command = ["CMD", "orchestrator", "probe", "http://127.0.0.1:${var.api.port}/health"]
    })
    readonlyRootFilesystem = true
    user                   = "65532"
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
  dynamic "load_balancer" {
    for_each = local.api_lb ? [1] : []
    content {
      target_group_arn = aws_lb_target_group.api[0].arn
      container_name   = "orchestrator-serve"
      container_port   = var.api.port
    }
  }
  health_check_grace_period_seconds = local.api_lb ? 30 : null
  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }
  tags = var.tags
}

# ---- the load balancer that signs people in ----

locals {
  api_lb = local.api_enabled && var.api.load_balancer != null
}

resource "aws_lb" "api" {
  #checkov:skip=CKV_AWS_91:The API logs every request (route, status, actor) to CloudWatch Logs; ALB access logs need a bucket with the ELB account allowed, left to the operator (docs/deploy.md).
  count              = local.api_lb ? 1 : 0
  name               = substr("${var.prefix}orchestrator-api", 0, 32)
  internal           = true
  load_balancer_type = "application"
  subnets            = var.api.load_balancer.subnet_ids
  security_groups    = var.api.load_balancer.security_group_ids
  # Headers that HTTP does not allow are dropped here, not passed on.
  drop_invalid_header_fields = true
  enable_deletion_protection = true
  tags                       = var.tags
}

resource "aws_lb_target_group" "api" {
  count       = local.api_lb ? 1 : 0
  name        = substr("${var.prefix}orchestrator-api", 0, 32)
  port        = var.api.port
  protocol    = "HTTP"
  target_type = "ip"
  vpc_id      = data.aws_subnet.api_lb[0].vpc_id
  health_check {
    # /health: the process is up. /ready would take every task out of
    # service while the database is down, and the console could not say so.
    path    = "/health"
    matcher = "200"
  }
  tags = var.tags
}

data "aws_subnet" "api_lb" {
  count = local.api_lb ? 1 : 0
  id    = var.api.load_balancer.subnet_ids[0]
}

resource "aws_lb_listener" "api" {
  count             = local.api_lb ? 1 : 0
  load_balancer_arn = aws_lb.api[0].arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.api.load_balancer.certificate_arn

  dynamic "default_action" {
    for_each = var.api.load_balancer.cognito == null ? [] : [var.api.load_balancer.cognito]
    content {
      type  = "authenticate-cognito"
      order = 1
      authenticate_cognito {
        user_pool_arn       = default_action.value.user_pool_arn
        user_pool_client_id = default_action.value.user_pool_client_id
        user_pool_domain    = default_action.value.user_pool_domain
        # A request without a session is sent to sign in first.
        on_unauthenticated_request = "authenticate"
      }
    }
  }
  dynamic "default_action" {
    for_each = var.api.load_balancer.oidc == null ? [] : [var.api.load_balancer.oidc]
    content {
      type  = "authenticate-oidc"
      order = 1
      authenticate_oidc {
        issuer                     = default_action.value.issuer
        authorization_endpoint     = default_action.value.authorization_endpoint
        token_endpoint             = default_action.value.token_endpoint
        user_info_endpoint         = default_action.value.user_info_endpoint
        client_id                  = default_action.value.client_id
        client_secret              = var.api_oidc_client_secret
        on_unauthenticated_request = "authenticate"
      }
    }
  }
  default_action {
    type             = "forward"
    order            = 2
    target_group_arn = aws_lb_target_group.api[0].arn
  }
  tags = var.tags
}
