output "projection_updates_queue_url" { value = aws_sqs_queue.inbound["projection_updates"].url }
output "projection_updates_queue_arn" { value = aws_sqs_queue.inbound["projection_updates"].arn }
output "projection_updates_queue_name" { value = aws_sqs_queue.inbound["projection_updates"].name }
output "projection_updates_dlq_url" { value = aws_sqs_queue.dlq["projection_updates"].url }
output "projection_updates_dlq_arn" { value = aws_sqs_queue.dlq["projection_updates"].arn }
output "run_lifecycle_queue_url" { value = aws_sqs_queue.inbound["run_lifecycle"].url }
output "run_lifecycle_queue_arn" { value = aws_sqs_queue.inbound["run_lifecycle"].arn }
output "run_lifecycle_queue_name" { value = aws_sqs_queue.inbound["run_lifecycle"].name }
output "run_lifecycle_dlq_url" { value = aws_sqs_queue.dlq["run_lifecycle"].url }
output "run_lifecycle_dlq_arn" { value = aws_sqs_queue.dlq["run_lifecycle"].arn }
output "run_requests_topic_arn" { value = local.run_requests_topic_arn }
output "run_requests_queue_url" { value = aws_sqs_queue.run_requests.url }
output "run_requests_dlq_url" { value = aws_sqs_queue.run_requests_dlq.url }
output "subscriptions" {
  description = "Every subscription made: topic, queue, raw delivery."
  value = merge(
    { run_requests = { topic = local.run_requests_topic_arn, queue = aws_sqs_queue.run_requests.arn, raw = var.raw_message_delivery.run_requests } },
    { for k, s in aws_sns_topic_subscription.inbound : k => { topic = s.topic_arn, queue = s.endpoint, raw = s.raw_message_delivery } }
  )
}
output "alerts_topic_arn" { value = aws_sns_topic.alerts.arn }
output "alarm_names" {
  description = "The CloudWatch alarms that publish to the alerts topic."
  value       = concat([for a in aws_cloudwatch_metric_alarm.dlq_not_empty : a.alarm_name], [for a in aws_cloudwatch_metric_alarm.oldest_message : a.alarm_name])
}
output "output_bucket" { value = local.bucket }
output "output_bucket_arn" { value = "arn:aws:s3:::${local.bucket}" }

# The workers' environment variables the messaging part determines.
output "worker_environment" {
  value = {
    PROJECTION_UPDATES_QUEUE_URL = aws_sqs_queue.inbound["projection_updates"].url
    PROJECTION_UPDATES_DLQ_URL   = aws_sqs_queue.dlq["projection_updates"].url
    RUN_LIFECYCLE_QUEUE_URL      = aws_sqs_queue.inbound["run_lifecycle"].url
    RUN_LIFECYCLE_DLQ_URL        = aws_sqs_queue.dlq["run_lifecycle"].url
    RUN_REQUESTS_TOPIC_ARN       = local.run_requests_topic_arn
    RUN_REQUESTS_QUEUE_URL       = aws_sqs_queue.run_requests.url
    ALERTS_TOPIC_ARN             = aws_sns_topic.alerts.arn
    OUTPUT_BUCKET                = local.bucket
  }
}
