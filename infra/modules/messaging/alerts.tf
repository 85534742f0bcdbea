# Where alerts go (docs/operations.md, "Alerts"): the topic the workers
# publish alerts to (ALERTS_TOPIC_ARN), optional email subscriptions, and
# CloudWatch alarms on the queues that publish to the same topic: a DLQ that
# is not empty, and a queue whose oldest message is older than a threshold.
# People are reached by SNS itself (email here; AWS Chatbot for Slack and
# PagerDuty's SNS integration subscribe to the same topic).

resource "aws_sns_topic" "alerts" {
  name              = "${var.prefix}alerts"
  kms_master_key_id = coalesce(var.kms_key_arn, "alias/aws/sns")
  tags              = var.tags
}

resource "aws_sns_topic_subscription" "alert_email" {
  for_each  = toset(var.alert_emails)
  topic_arn = aws_sns_topic.alerts.arn
  protocol  = "email"
  endpoint  = each.value
}

locals {
  dead_letter_queues = {
    projection_updates = aws_sqs_queue.dlq["projection_updates"].name
    run_lifecycle      = aws_sqs_queue.dlq["run_lifecycle"].name
    run_requests       = aws_sqs_queue.run_requests_dlq.name
  }
  watched_queues = {
    projection_updates = aws_sqs_queue.inbound["projection_updates"].name
    run_lifecycle      = aws_sqs_queue.inbound["run_lifecycle"].name
    run_requests       = aws_sqs_queue.run_requests.name
  }
}

resource "aws_cloudwatch_metric_alarm" "dlq_not_empty" {
  for_each            = local.dead_letter_queues
  alarm_name          = "${var.prefix}${replace(each.key, "_", "-")}-dlq-not-empty"
  alarm_description   = "Messages were dead-lettered on ${each.value}: `orchestrator dlq list` says why (docs/contracts.md, \"Dead letters\")."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = each.value }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alerts.arn]
  ok_actions          = [aws_sns_topic.alerts.arn]
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "oldest_message" {
  for_each            = local.watched_queues
  alarm_name          = "${var.prefix}${replace(each.key, "_", "-")}-oldest-message"
  alarm_description   = "The oldest message on ${each.value} waited over ${var.max_message_age_seconds} s: its consumers are down, paused or too few."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = each.value }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  threshold           = var.max_message_age_seconds
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alerts.arn]
  ok_actions          = [aws_sns_topic.alerts.arn]
  tags                = var.tags
}
