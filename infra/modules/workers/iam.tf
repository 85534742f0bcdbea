# One task role per worker, each allowed exactly what that worker does:
# consume its own queue, dead-letter to its own DLQ, publish run requests,
# offload oversized requests to the output bucket, read inbound pointers.

locals {
  consumes = {
    projection-update-worker = {
      queue_arn = var.messaging.projection_updates_queue_arn
      dlq_arn   = var.messaging.projection_updates_dlq_arn
    }
    run-lifecycle-worker = {
      queue_arn = var.messaging.run_lifecycle_queue_arn
      dlq_arn   = var.messaging.run_lifecycle_dlq_arn
    }
  }
}

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "worker" {
  for_each = local.consumes

  statement {
    sid = "ConsumeOwnQueue"
    actions = [
      "sqs:ReceiveMessage",
      "sqs:DeleteMessage",
      "sqs:ChangeMessageVisibility",
      "sqs:GetQueueAttributes",
      "sqs:GetQueueUrl",
    ]
    resources = [each.value.queue_arn]
  }
  statement {
    sid       = "DeadLetter"
    actions   = ["sqs:SendMessage", "sqs:GetQueueUrl"]
    resources = [each.value.dlq_arn]
  }
  statement {
    sid       = "PublishRunRequests"
    actions   = ["sns:Publish"]
    resources = [var.messaging.run_requests_topic_arn]
  }
  statement {
    sid       = "PublishAlerts"
    actions   = ["sns:Publish"]
    resources = [var.messaging.alerts_topic_arn]
  }
  statement {
    sid       = "OffloadLargeRunRequests"
    actions   = ["s3:PutObject"]
    resources = ["${var.messaging.output_bucket_arn}/run-requests/*"]
  }
  statement {
    sid       = "ReadInboundPointers"
    actions   = ["s3:GetObject"]
    resources = [for b in concat([var.messaging.output_bucket_arn], var.inbound_payload_bucket_arns) : "${b}/*"]
  }
  statement {
    sid       = "UseTheStackKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.kms_key_arn]
  }
}

resource "aws_iam_role" "task" {
  for_each           = local.consumes
  name               = "${var.prefix}${each.key}"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy" "task" {
  for_each = local.consumes
  name     = "${var.prefix}${each.key}"
  role     = aws_iam_role.task[each.key].id
  policy   = data.aws_iam_policy_document.worker[each.key].json
}

# The execution role: pull the image, write logs, read the DATABASE_URL secret.
resource "aws_iam_role" "execution" {
  name               = "${var.prefix}workers-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

# Each process's database password, injected by ECS at start.
data "aws_iam_policy_document" "read_database_secret" {
  statement {
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [local.db.owner_secret_arn, local.db.worker_secret_arn, local.db.api_secret_arn]
  }
  statement {
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]
  }
}

resource "aws_iam_role_policy" "read_database_secret" {
  name   = "${var.prefix}read-database-passwords"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.read_database_secret.json
}
