output "cluster_name" { value = aws_ecs_cluster.this.name }
output "service_names" { value = { for k, s in aws_ecs_service.worker : k => s.name } }
output "task_role_arns" { value = { for k, r in aws_iam_role.task : k => r.arn } }
output "environment" {
  description = "The environment every worker task gets (DATABASE_PASSWORD comes from its secret)."
  value       = local.environment
}
output "api_service_name" {
  description = "The internal operator API service, when enabled."
  value       = length(aws_ecs_service.api) > 0 ? aws_ecs_service.api[0].name : null
}
output "api_url" {
  description = "The load balancer's address for the operator API and console, when api.load_balancer is set."
  value       = length(aws_lb.api) > 0 ? "https://${aws_lb.api[0].dns_name}/" : null
}

output "oneoff_commands" {
  description = "The aws ecs run-task command of each one-off task (migrate, catalog-apply)."
  value = {
    for k, t in aws_ecs_task_definition.oneoff : k => join(" ", [
      "aws ecs run-task --region ${var.region} --cluster ${aws_ecs_cluster.this.name}",
      "--launch-type FARGATE --task-definition ${t.family}",
      "--network-configuration '${local.network_configuration}'",
    ])
  }
}
