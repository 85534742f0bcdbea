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
output "run_requests_topic_arn" { value = aws_sns_topic.run_requests.arn }
output "run_requests_queue_url" { value = aws_sqs_queue.run_requests.url }
output "output_bucket" { value = aws_s3_bucket.outputs.bucket }
output "output_bucket_arn" { value = aws_s3_bucket.outputs.arn }

# The workers' environment variables the messaging part determines.
output "worker_environment" {
  value = {
    PROJECTION_UPDATES_QUEUE_URL = aws_sqs_queue.inbound["projection_updates"].url
    PROJECTION_UPDATES_DLQ_URL   = aws_sqs_queue.dlq["projection_updates"].url
    RUN_LIFECYCLE_QUEUE_URL      = aws_sqs_queue.inbound["run_lifecycle"].url
    RUN_LIFECYCLE_DLQ_URL        = aws_sqs_queue.dlq["run_lifecycle"].url
    RUN_REQUESTS_TOPIC_ARN       = aws_sns_topic.run_requests.arn
    RUN_REQUESTS_QUEUE_URL       = aws_sqs_queue.run_requests.url
    OUTPUT_BUCKET                = aws_s3_bucket.outputs.bucket
  }
}
