# One generated password per least-privilege database role, in Secrets
# Manager. The password is generated at apply time (an ephemeral resource)
# and written write-only: it is in neither the plan nor the state.
# `orchestrator migrate` sets each role's password from its secret; a new
# password_version generates new ones (docs/deploy.md, "Rotating").

variable "prefix" {
  type = string
}

variable "roles" {
  description = "Role key => PostgreSQL role name."
  type        = map(string)
  default = {
    worker = "orchestrator_worker"
    api    = "orchestrator_api"
  }
}

variable "kms_key_arn" {
  description = "Encrypts the secrets; null: the account's aws/secretsmanager key."
  type        = string
  default     = null
}

variable "password_version" {
  type    = number
  default = 1
}

resource "aws_secretsmanager_secret" "role" {
  #checkov:skip=CKV2_AWS_57:Rotation is a new password_version, a migrate run and a redeploy (docs/deploy.md, "Rotating"); a rotation Lambda would change the password under running tasks.
  for_each                = var.roles
  name                    = "${var.prefix}orchestrator/${each.key}-db-password"
  description             = "Password of the ${each.value} PostgreSQL role (set by orchestrator migrate)."
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = 7
}

ephemeral "aws_secretsmanager_random_password" "role" {
  for_each            = var.roles
  password_length     = 40
  exclude_punctuation = true
}

resource "aws_secretsmanager_secret_version" "role" {
  for_each                 = var.roles
  secret_id                = aws_secretsmanager_secret.role[each.key].id
  secret_string_wo         = ephemeral.aws_secretsmanager_random_password.role[each.key].random_password
  secret_string_wo_version = var.password_version
}

output "roles" { value = var.roles }
output "secret_arns" {
  value = { for k, s in aws_secretsmanager_secret.role : k => s.arn }
}
