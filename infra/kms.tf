# One customer-managed key for the stack's data at rest: queues, topics, the
# output bucket, log groups, the database (storage, snapshots, Performance
# Insights) and the passwords' secrets. Rotated yearly by KMS.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  account_root = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"
}

data "aws_iam_policy_document" "kms" {
  #checkov:skip=CKV_AWS_356:In a key policy "*" is the key itself; the statements that allow more than the account name the services and the account they act for.
  #checkov:skip=CKV_AWS_111:In a key policy "*" is the key itself; the account root statement delegates to IAM policies, which grant the task roles Decrypt and GenerateDataKey only.
  #checkov:skip=CKV_AWS_109:In a key policy "*" is the key itself; the account root statement is what keeps the key manageable (without it the key can be locked out).
  # Key policies name the key as "*": the key itself. The account's IAM
  # policies then decide who of the account may use it (the task roles do).
  statement {
    sid       = "AccountIamPoliciesDecide"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = [local.account_root]
    }
  }
  # SNS delivering to the encrypted queues, CloudWatch alarms publishing to
  # the encrypted alerts topic, S3 notifications: the services use the key
  # on this account's behalf only.
  statement {
    sid       = "ServicesOfThisAccount"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["sns.amazonaws.com", "cloudwatch.amazonaws.com", "s3.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
  statement {
    sid = "CloudWatchLogsOfThisStack"
    actions = [
      "kms:Encrypt", "kms:Decrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo",
      "kms:GenerateDataKey", "kms:GenerateDataKeyWithoutPlaintext", "kms:DescribeKey",
    ]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${var.region}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${data.aws_partition.current.partition}:logs:${var.region}:${data.aws_caller_identity.current.account_id}:log-group:/ecs/${var.prefix}*"]
    }
  }
  # The metric runner and the producer (other roles, maybe other accounts)
  # read and write the encrypted queues, topic and bucket.
  dynamic "statement" {
    for_each = length(var.kms_key_users) > 0 ? [var.kms_key_users] : []
    content {
      sid       = "RunnersAndProducers"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = ["*"]
      principals {
        type        = "AWS"
        identifiers = statement.value
      }
    }
  }
}

resource "aws_kms_key" "main" {
  description             = "${var.prefix}metric-orchestrator: queues, topics, bucket, logs, database, secrets"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
}

resource "aws_kms_alias" "main" {
  name          = "alias/${var.prefix}metric-orchestrator"
  target_key_id = aws_kms_key.main.key_id
}
