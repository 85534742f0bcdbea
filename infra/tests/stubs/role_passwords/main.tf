# Stands in for modules/role_passwords under terraform test's mock provider,
# which cannot run its ephemeral password generator: the same inputs and
# outputs, secrets without a generated value. The real module is applied on
# LocalStack by tests/it/terraform.rs.

variable "prefix" {
  type = string
}

variable "roles" {
  type = map(string)
}

variable "kms_key_arn" {
  type    = string
  default = null
}

variable "password_version" {
  type    = number
  default = 1
}

resource "aws_secretsmanager_secret" "role" {
  #checkov:skip=CKV2_AWS_57:Test stub; see modules/role_passwords.
  for_each   = var.roles
  name       = "${var.prefix}orchestrator/${each.key}-db-password"
  kms_key_id = var.kms_key_arn
}

output "roles" { value = var.roles }
output "secret_arns" {
  value = { for k, s in aws_secretsmanager_secret.role : k => s.arn }
}
