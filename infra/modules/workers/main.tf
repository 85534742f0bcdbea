# ECS Fargate: one cluster, a task definition and service per worker, scaled
# on the visible messages of the queue the worker consumes.

locals {
  queue_name = {
    projection-update-worker = var.messaging.projection_updates_queue_name
    run-lifecycle-worker     = var.messaging.run_lifecycle_queue_name
  }
  environment = merge(
    {
      PROJECTION_UPDATES_QUEUE_URL = var.messaging.projection_updates_queue_url
      PROJECTION_UPDATES_DLQ_URL   = var.messaging.projection_updates_dlq_url
      RUN_LIFECYCLE_QUEUE_URL      = var.messaging.run_lifecycle_queue_url
      RUN_LIFECYCLE_DLQ_URL        = var.messaging.run_lifecycle_dlq_url
      RUN_REQUESTS_TOPIC_ARN       = var.messaging.run_requests_topic_arn
      ALERTS_TOPIC_ARN             = var.messaging.alerts_topic_arn
      OUTPUT_BUCKET                = var.messaging.output_bucket
      OPS_ADDR                     = "0.0.0.0:${var.ops_port}"
      LOG_FORMAT                   = "json"
      RUST_LOG                     = "info"
      AWS_REGION                   = var.region
      DATABASE_URL                 = local.database_url.worker
    },
    var.settings,
  )
  db = var.database
  database_url = {
    for role, user in { owner = local.db.owner_user, worker = local.db.worker_user, api = local.db.api_user } :
    role => "postgres://${user}@${local.db.host}:${local.db.port}/${local.db.name}?sslmode=verify-full&sslrootcert=${local.db.sslrootcert}"
  }
  # ECS reads a JSON key of a secret with "<arn>:<key>::".
  password_secret = {
    owner  = "${local.db.owner_secret_arn}:password::"
    worker = local.db.worker_secret_arn
    api    = local.db.api_secret_arn
  }
  # The container health check: the image has no shell, so the CLI asks the
  # process's /healthz over loopback.
  health_check = {
    command     = ["CMD", "orchestrator", "probe", "http://127.0.0.1:${var.ops_port}/healthz"]
    interval    = 15
    timeout     = 5
    retries     = 3
    startPeriod = 30
  }
}

resource "aws_ecs_cluster" "this" {
  name = "${var.prefix}metric-orchestrator"
  setting {
    name  = "containerInsights"
    value = "enabled"
  }
  tags = var.tags
}

resource "aws_cloudwatch_log_group" "worker" {
  for_each          = var.workers
  name              = "/ecs/${var.prefix}${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

resource "aws_ecs_task_definition" "worker" {
  for_each                 = var.workers
  family                   = "${var.prefix}${each.key}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = each.value.cpu
  memory                   = each.value.memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task[each.key].arn
  container_definitions = jsonencode([{
    name         = each.key
    image        = var.image
    command      = [each.key]
    essential    = true
    stopTimeout  = 60 # > SHUTDOWN_GRACE_SECS: in-flight messages finish
    portMappings = [{ containerPort = var.ops_port, protocol = "tcp" }]
    environment  = [for k in sort(keys(local.environment)) : { name = k, value = local.environment[k] }]
    secrets      = [{ name = "DATABASE_PASSWORD", valueFrom = local.password_secret.worker }]
    healthCheck  = local.health_check
    # Nothing is written to disk: logs go to stdout.
    readonlyRootFilesystem = true
    user                   = "65532"
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.worker[each.key].name
        awslogs-region        = var.region
        awslogs-stream-prefix = each.key
      }
    }
  }])
  tags = var.tags
}

resource "aws_ecs_service" "worker" {
  for_each        = var.workers
  name            = each.key
  cluster         = aws_ecs_cluster.this.id
  task_definition = aws_ecs_task_definition.worker[each.key].arn
  launch_type     = "FARGATE"
  desired_count   = each.value.min_count
  # Rolling deploys: new tasks start before old ones drain (SIGTERM → drain).
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  # A release whose tasks never become healthy is rolled back by ECS.
  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }
  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = var.security_group_ids
    assign_public_ip = var.assign_public_ip
  }
  lifecycle {
    ignore_changes = [desired_count] # owned by autoscaling
  }
  tags = var.tags
}

resource "aws_appautoscaling_target" "worker" {
  for_each           = var.workers
  service_namespace  = "ecs"
  resource_id        = "service/${aws_ecs_cluster.this.name}/${aws_ecs_service.worker[each.key].name}"
  scalable_dimension = "ecs:service:DesiredCount"
  min_capacity       = each.value.min_count
  max_capacity       = each.value.max_count
}

# Target tracking on backlog per task: visible messages / running tasks.
resource "aws_appautoscaling_policy" "queue_depth" {
  for_each           = var.workers
  name               = "${var.prefix}${each.key}-backlog"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.worker[each.key].service_namespace
  resource_id        = aws_appautoscaling_target.worker[each.key].resource_id
  scalable_dimension = aws_appautoscaling_target.worker[each.key].scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value       = each.value.backlog_per_task
    scale_in_cooldown  = 120
    scale_out_cooldown = 30
    customized_metric_specification {
      metrics {
        id          = "visible"
        return_data = false
        metric_stat {
          stat = "Average"
          metric {
            namespace   = "AWS/SQS"
            metric_name = "ApproximateNumberOfMessagesVisible"
            dimensions {
              name  = "QueueName"
              value = local.queue_name[each.key]
            }
          }
        }
      }
      metrics {
        id          = "tasks"
        return_data = false
        metric_stat {
          stat = "Average"
          metric {
            namespace   = "ECS/ContainerInsights"
            metric_name = "RunningTaskCount"
            dimensions {
              name  = "ClusterName"
              value = aws_ecs_cluster.this.name
            }
            dimensions {
              name  = "ServiceName"
              value = aws_ecs_service.worker[each.key].name
            }
          }
        }
      }
      metrics {
        id          = "backlog_per_task"
        expression  = "visible / IF(tasks > 0, tasks, 1)"
        label       = "visible messages per running task"
        return_data = true
      }
    }
  }
}

# A worker with no running task consumes nothing and alerts nothing: the
# alarm says so on the alerts topic (Container Insights is on above).
resource "aws_cloudwatch_metric_alarm" "no_running_task" {
  for_each            = var.workers
  alarm_name          = "${var.prefix}${each.key}-no-running-task"
  alarm_description   = "No task of ${each.key} has run for three minutes: see its service events and the log group ${aws_cloudwatch_log_group.worker[each.key].name}."
  namespace           = "ECS/ContainerInsights"
  metric_name         = "RunningTaskCount"
  dimensions          = { ClusterName = aws_ecs_cluster.this.name, ServiceName = aws_ecs_service.worker[each.key].name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 3
  threshold           = 1
  comparison_operator = "LessThanThreshold"
  treat_missing_data  = "breaching"
  alarm_actions       = [var.messaging.alerts_topic_arn]
  ok_actions          = [var.messaging.alerts_topic_arn]
  tags                = var.tags
}
