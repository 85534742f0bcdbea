# Queues with DLQs and redrive, the run-requests topic, the runner's queue
# subscribed to it, and the output bucket: the same set `orchestrator
# provision` creates (docs/operations.md). For a drop-in switch from
# metrics-engine-cp (docs/compatibility.md) it can also reuse an existing
# run-requests topic and bucket, subscribe the run-lifecycle queue to the
# runner's own topics and the projection-updates queue to the producer's
# topic. FIFO is chosen per resource: a queue subscribed to topics takes
# their kind (SNS delivers FIFO topics to FIFO queues only, standard topics
# to standard queues only).

locals {
  topic_fifo = {
    run_lifecycle      = [for t in var.run_lifecycle_topic_arns : endswith(t, ".fifo")]
    projection_updates = [for t in var.projection_updates_topic_arns : endswith(t, ".fifo")]
  }
  queue_fifo = {
    for k, explicit in {
      run_lifecycle      = var.fifo_run_lifecycle
      projection_updates = var.fifo_projection_updates
    } : k => length(local.topic_fifo[k]) > 0 ? alltrue(local.topic_fifo[k]) : coalesce(explicit, var.fifo)
  }
  run_requests_fifo = var.run_requests_topic_arn != null ? endswith(var.run_requests_topic_arn, ".fifo") : coalesce(var.fifo_run_requests, var.fifo)
  inbound = {
    projection_updates = "${var.prefix}projection-updates"
    run_lifecycle      = "${var.prefix}run-lifecycle"
  }
  inbound_topics = {
    run_lifecycle      = var.run_lifecycle_topic_arns
    projection_updates = var.projection_updates_topic_arns
  }
  # One subscription per (queue, topic).
  inbound_subscriptions = merge([
    for k, topics in local.inbound_topics : {
      for i, t in topics : "${k}-${i}" => { queue = k, topic = t }
    }
  ]...)
  run_requests_topic_arn = var.run_requests_topic_arn != null ? var.run_requests_topic_arn : aws_sns_topic.run_requests[0].arn
  bucket                 = var.existing_output_bucket != null ? var.existing_output_bucket : coalesce(var.output_bucket, "${var.prefix}metric-outputs")
}

resource "aws_sqs_queue" "dlq" {
  for_each                    = local.inbound
  name                        = "${each.value}-dlq${local.queue_fifo[each.key] ? ".fifo" : ""}"
  fifo_queue                  = local.queue_fifo[each.key]
  message_retention_seconds   = var.message_retention_seconds
  content_based_deduplication = local.queue_fifo[each.key] ? false : null
  tags                        = var.tags
}

resource "aws_sqs_queue" "inbound" {
  for_each                   = local.inbound
  name                       = "${each.value}${local.queue_fifo[each.key] ? ".fifo" : ""}"
  fifo_queue                 = local.queue_fifo[each.key]
  visibility_timeout_seconds = var.visibility_timeout_seconds
  message_retention_seconds  = var.message_retention_seconds
  receive_wait_time_seconds  = 20
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq[each.key].arn
    maxReceiveCount     = var.max_receive_count
  })
  tags = var.tags

  lifecycle {
    precondition {
      condition     = length(distinct(local.topic_fifo[each.key])) <= 1
      error_message = "The ${each.key} queue cannot be subscribed to FIFO and standard topics at once: SNS delivers FIFO topics to FIFO queues only."
    }
  }
}

# On AWS a queue accepts messages from a topic only if its policy says so.
data "aws_iam_policy_document" "inbound" {
  for_each = { for k, topics in local.inbound_topics : k => topics if length(topics) > 0 }
  statement {
    sid       = "FromSubscribedTopics"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.inbound[each.key].arn]
    principals {
      type        = "Service"
      identifiers = ["sns.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = each.value
    }
  }
}

resource "aws_sqs_queue_policy" "inbound" {
  for_each  = data.aws_iam_policy_document.inbound
  queue_url = aws_sqs_queue.inbound[each.key].id
  policy    = each.value.json
}

resource "aws_sns_topic_subscription" "inbound" {
  for_each             = local.inbound_subscriptions
  topic_arn            = each.value.topic
  protocol             = "sqs"
  endpoint             = aws_sqs_queue.inbound[each.value.queue].arn
  raw_message_delivery = var.raw_message_delivery[each.value.queue]
  depends_on           = [aws_sqs_queue_policy.inbound]
}

resource "aws_sns_topic" "run_requests" {
  count      = var.run_requests_topic_arn == null ? 1 : 0
  name       = "${var.prefix}run-requests${local.run_requests_fifo ? ".fifo" : ""}"
  fifo_topic = local.run_requests_fifo
  tags       = var.tags
}

# What a metric runner reads: the topic's messages (raw by default).
resource "aws_sqs_queue" "run_requests_dlq" {
  name                        = "${var.prefix}run-requests-dlq${local.run_requests_fifo ? ".fifo" : ""}"
  fifo_queue                  = local.run_requests_fifo
  content_based_deduplication = local.run_requests_fifo ? false : null
  message_retention_seconds   = var.message_retention_seconds
  tags                        = var.tags
}

resource "aws_sqs_queue" "run_requests" {
  name                       = "${var.prefix}run-requests${local.run_requests_fifo ? ".fifo" : ""}"
  fifo_queue                 = local.run_requests_fifo
  visibility_timeout_seconds = var.visibility_timeout_seconds
  message_retention_seconds  = var.message_retention_seconds
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.run_requests_dlq.arn
    maxReceiveCount     = var.max_receive_count
  })
  tags = var.tags
}

data "aws_iam_policy_document" "topic_to_queue" {
  statement {
    sid       = "RunRequestsTopicOnly"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.run_requests.arn]
    principals {
      type        = "Service"
      identifiers = ["sns.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [local.run_requests_topic_arn]
    }
  }
}

resource "aws_sqs_queue_policy" "run_requests" {
  queue_url = aws_sqs_queue.run_requests.id
  policy    = data.aws_iam_policy_document.topic_to_queue.json
}

resource "aws_sns_topic_subscription" "run_requests" {
  topic_arn            = local.run_requests_topic_arn
  protocol             = "sqs"
  endpoint             = aws_sqs_queue.run_requests.arn
  raw_message_delivery = var.raw_message_delivery.run_requests
  depends_on           = [aws_sqs_queue_policy.run_requests]
}

resource "aws_s3_bucket" "outputs" {
  count         = var.existing_output_bucket == null ? 1 : 0
  bucket        = local.bucket
  force_destroy = var.force_destroy_bucket
  tags          = var.tags
}

resource "aws_s3_bucket_public_access_block" "outputs" {
  count                   = var.existing_output_bucket == null ? 1 : 0
  bucket                  = aws_s3_bucket.outputs[0].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}
