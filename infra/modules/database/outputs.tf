output "host" { value = aws_db_instance.this.address }
output "port" { value = aws_db_instance.this.port }
output "name" { value = aws_db_instance.this.db_name }
output "owner_user" { value = var.owner_user }
output "owner_secret_arn" {
  description = "The RDS-managed master secret (JSON with username and password)."
  value       = aws_db_instance.this.master_user_secret[0].secret_arn
}
output "roles" { value = local.roles }
