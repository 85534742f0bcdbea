# Queues with DLQs and redrive, the run-requests topic, the runner's queue
# subscribed with raw delivery, and the output bucket: the same set
# `orchestrator provision` creates (docs/operations.md).

locals {
  suffix = var.fifo ? ".fifo" : ""
  bucket = coalesce(var.output_bucket, "${var.prefix}metric-outputs")
  inbound = {
    projection_updates = "${var.prefix}projection-updates"
    run_lifecycle      = "${var.prefix}run-lifecycle"
  }
}

resource "aws_sqs_queue" "dlq" {
  for_each                    = local.inbound
  name                        = "${each.value}-dlq${local.suffix}"
  fifo_queue                  = var.fifo
  message_retention_seconds   = var.message_retention_seconds
  content_based_deduplication = var.fifo ? false : null
  tags                        = var.tags
}

resource "aws_sqs_queue" "inbound" {
  for_each                   = local.inbound
  name                       = "${each.value}${local.suffix}"
  fifo_queue                 = var.fifo
  visibility_timeout_seconds = var.visibility_timeout_seconds
  message_retention_seconds  = var.message_retention_seconds
  receive_wait_time_seconds  = 20
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq[each.key].arn
    maxReceiveCount     = var.max_receive_count
  })
  tags = var.tags
}

resource "aws_sns_topic" "run_requests" {
  name       = "${var.prefix}run-requests${local.suffix}"
  fifo_topic = var.fifo
  tags       = var.tags
}

# What a metric runner reads: the topic's messages, raw (no SNS envelope).
resource "aws_sqs_queue" "run_requests_dlq" {
  name                      = "${var.prefix}run-requests-dlq${local.suffix}"
  fifo_queue                = var.fifo
  message_retention_seconds = var.message_retention_seconds
  tags                      = var.tags
}

resource "aws_sqs_queue" "run_requests" {
  name                       = "${var.prefix}run-requests${local.suffix}"
  fifo_queue                 = var.fifo
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
      values   = [aws_sns_topic.run_requests.arn]
    }
  }
}

resource "aws_sqs_queue_policy" "run_requests" {
  queue_url = aws_sqs_queue.run_requests.id
  policy    = data.aws_iam_policy_document.topic_to_queue.json
}

resource "aws_sns_topic_subscription" "run_requests" {
  topic_arn            = aws_sns_topic.run_requests.arn
  protocol             = "sqs"
  endpoint             = aws_sqs_queue.run_requests.arn
  raw_message_delivery = true
  depends_on           = [aws_sqs_queue_policy.run_requests]
}

resource "aws_s3_bucket" "outputs" {
  bucket        = local.bucket
  force_destroy = var.force_destroy_bucket
  tags          = var.tags
}

resource "aws_s3_bucket_public_access_block" "outputs" {
  bucket                  = aws_s3_bucket.outputs.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}
