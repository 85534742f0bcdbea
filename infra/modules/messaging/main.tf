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
  for_each                          = local.inbound
  name                              = "${each.value}-dlq${local.queue_fifo[each.key] ? ".fifo" : ""}"
  fifo_queue                        = local.queue_fifo[each.key]
  message_retention_seconds         = var.message_retention_seconds
  content_based_deduplication       = local.queue_fifo[each.key] ? false : null
  kms_master_key_id                 = var.kms_key_arn
  kms_data_key_reuse_period_seconds = var.kms_key_arn == null ? null : 3600
  sqs_managed_sse_enabled           = var.kms_key_arn == null ? true : null
  tags                              = var.tags
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
  kms_master_key_id                 = var.kms_key_arn
  kms_data_key_reuse_period_seconds = var.kms_key_arn == null ? null : 3600
  sqs_managed_sse_enabled           = var.kms_key_arn == null ? true : null
  tags                              = var.tags

  lifecycle {
    precondition {
      condition     = length(distinct(local.topic_fifo[each.key])) <= 1
      error_message = "The ${each.key} queue cannot be subscribed to FIFO and standard topics at once: SNS delivers FIFO topics to FIFO queues only."
    }
  }
}

# Every queue's policy refuses requests not made over TLS; a queue that
# topics deliver to also lets exactly those topics send to it (on AWS a queue
# accepts messages from a topic only if its policy says so).
locals {
  queue_arns = {
    projection_updates     = aws_sqs_queue.inbound["projection_updates"].arn
    run_lifecycle          = aws_sqs_queue.inbound["run_lifecycle"].arn
    projection_updates_dlq = aws_sqs_queue.dlq["projection_updates"].arn
    run_lifecycle_dlq      = aws_sqs_queue.dlq["run_lifecycle"].arn
    run_requests           = aws_sqs_queue.run_requests.arn
    run_requests_dlq       = aws_sqs_queue.run_requests_dlq.arn
  }
  queue_urls = {
    projection_updates     = aws_sqs_queue.inbound["projection_updates"].id
    run_lifecycle          = aws_sqs_queue.inbound["run_lifecycle"].id
    projection_updates_dlq = aws_sqs_queue.dlq["projection_updates"].id
    run_lifecycle_dlq      = aws_sqs_queue.dlq["run_lifecycle"].id
    run_requests           = aws_sqs_queue.run_requests.id
    run_requests_dlq       = aws_sqs_queue.run_requests_dlq.id
  }
  queue_senders = {
    projection_updates = var.projection_updates_topic_arns
    run_lifecycle      = var.run_lifecycle_topic_arns
    run_requests       = [local.run_requests_topic_arn]
  }
}

data "aws_iam_policy_document" "queue" {
  for_each = local.queue_arns
  statement {
    sid       = "DenyWithoutTLS"
    effect    = "Deny"
    actions   = ["sqs:*"]
    resources = [each.value]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
  dynamic "statement" {
    for_each = length(lookup(local.queue_senders, each.key, [])) > 0 ? [local.queue_senders[each.key]] : []
    content {
      sid       = "FromSubscribedTopics"
      actions   = ["sqs:SendMessage"]
      resources = [each.value]
      principals {
        type        = "Service"
        identifiers = ["sns.amazonaws.com"]
      }
      condition {
        test     = "ArnEquals"
        variable = "aws:SourceArn"
        values   = statement.value
      }
    }
  }
}

resource "aws_sqs_queue_policy" "queue" {
  for_each  = local.queue_urls
  queue_url = each.value
  policy    = data.aws_iam_policy_document.queue[each.key].json
}

moved {
  from = aws_sqs_queue_policy.inbound["projection_updates"]
  to   = aws_sqs_queue_policy.queue["projection_updates"]
}

moved {
  from = aws_sqs_queue_policy.inbound["run_lifecycle"]
  to   = aws_sqs_queue_policy.queue["run_lifecycle"]
}

moved {
  from = aws_sqs_queue_policy.run_requests
  to   = aws_sqs_queue_policy.queue["run_requests"]
}

resource "aws_sns_topic_subscription" "inbound" {
  for_each             = local.inbound_subscriptions
  topic_arn            = each.value.topic
  protocol             = "sqs"
  endpoint             = aws_sqs_queue.inbound[each.value.queue].arn
  raw_message_delivery = var.raw_message_delivery[each.value.queue]
  depends_on           = [aws_sqs_queue_policy.queue]
}

resource "aws_sns_topic" "run_requests" {
  count             = var.run_requests_topic_arn == null ? 1 : 0
  name              = "${var.prefix}run-requests${local.run_requests_fifo ? ".fifo" : ""}"
  fifo_topic        = local.run_requests_fifo
  kms_master_key_id = coalesce(var.kms_key_arn, "alias/aws/sns")
  tags              = var.tags
}

# What a metric runner reads: the topic's messages (raw by default).
resource "aws_sqs_queue" "run_requests_dlq" {
  name                              = "${var.prefix}run-requests-dlq${local.run_requests_fifo ? ".fifo" : ""}"
  fifo_queue                        = local.run_requests_fifo
  content_based_deduplication       = local.run_requests_fifo ? false : null
  message_retention_seconds         = var.message_retention_seconds
  kms_master_key_id                 = var.kms_key_arn
  kms_data_key_reuse_period_seconds = var.kms_key_arn == null ? null : 3600
  sqs_managed_sse_enabled           = var.kms_key_arn == null ? true : null
  tags                              = var.tags
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
  kms_master_key_id                 = var.kms_key_arn
  kms_data_key_reuse_period_seconds = var.kms_key_arn == null ? null : 3600
  sqs_managed_sse_enabled           = var.kms_key_arn == null ? true : null
  tags                              = var.tags
}

resource "aws_sns_topic_subscription" "run_requests" {
  topic_arn            = local.run_requests_topic_arn
  protocol             = "sqs"
  endpoint             = aws_sqs_queue.run_requests.arn
  raw_message_delivery = var.raw_message_delivery.run_requests
  depends_on           = [aws_sqs_queue_policy.queue]
}

resource "aws_s3_bucket" "outputs" {
  #checkov:skip=CKV_AWS_18:Server access logs would need a second bucket per stack; CloudTrail data events are the audit trail an account already has.
  #checkov:skip=CKV_AWS_144:Outputs are recomputed from their inputs by re-running the metric; versioning covers mistakes, replication would double storage cost.
  #checkov:skip=CKV2_AWS_62:Nothing reacts to new outputs by S3 notification: runners report completion on the run-lifecycle queue.
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

resource "aws_s3_bucket_server_side_encryption_configuration" "outputs" {
  count  = var.existing_output_bucket == null ? 1 : 0
  bucket = aws_s3_bucket.outputs[0].id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = var.kms_key_arn == null ? "AES256" : "aws:kms"
      kms_master_key_id = var.kms_key_arn
    }
    # One data key per bucket, not per object: fewer KMS calls, same key.
    bucket_key_enabled = var.kms_key_arn != null
  }
}

# Versions keep what a runner overwrote or deleted by mistake, for a while.
resource "aws_s3_bucket_versioning" "outputs" {
  count  = var.existing_output_bucket == null ? 1 : 0
  bucket = aws_s3_bucket.outputs[0].id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "outputs" {
  count  = var.existing_output_bucket == null ? 1 : 0
  bucket = aws_s3_bucket.outputs[0].id
  rule {
    id     = "old-versions-and-uploads"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_days
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }
  depends_on = [aws_s3_bucket_versioning.outputs]
}

data "aws_iam_policy_document" "outputs_tls_only" {
  count = var.existing_output_bucket == null ? 1 : 0
  statement {
    sid       = "DenyWithoutTLS"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.outputs[0].arn, "${aws_s3_bucket.outputs[0].arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "outputs" {
  count  = var.existing_output_bucket == null ? 1 : 0
  bucket = aws_s3_bucket.outputs[0].id
  policy = data.aws_iam_policy_document.outputs_tls_only[0].json
  # The public access block first: a policy is never briefly public.
  depends_on = [aws_s3_bucket_public_access_block.outputs]
}
