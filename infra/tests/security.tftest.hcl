# The security properties of infra/, checked without an AWS account: the
# AWS provider is mocked (tests/mocks.tfmock.hcl gives the values AWS would
# compute). Mock providers cannot run ephemeral resources, so the two root
# runs need modules/role_passwords replaced by tests/stubs/role_passwords
# (same outputs, no generator); tests/it/terraform.rs does that in its copy
# of infra/, and applies the real module on LocalStack.

mock_provider "aws" {
  source = "./tests"
}

variables {
  prefix = "prod-"
  region = "us-east-1"
}

run "root_in_an_existing_vpc" {
  command = apply

  variables {
    vpc_id        = "vpc-0123456789abcdef0"
    subnet_ids    = ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]
    console_cidrs = ["10.0.0.0/8"]
    api = {
      enabled          = true
      token_secret_arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:api-token-AbCdEf"
      load_balancer = {
        certificate_arn = "arn:aws:acm:us-east-1:123456789012:certificate/00000000-0000-0000-0000-000000000000"
        cognito = {
          user_pool_arn       = "arn:aws:cognito-idp:us-east-1:123456789012:userpool/us-east-1_example"
          user_pool_client_id = "exampleclientid"
          user_pool_domain    = "metric-orchestrator"
        }
      }
    }
  }

  assert {
    condition     = aws_kms_key.main.enable_key_rotation
    error_message = "the stack's key rotates yearly"
  }
  assert {
    condition     = aws_ecr_repository.image.image_tag_mutability == "IMMUTABLE" && aws_ecr_repository.image.image_scanning_configuration[0].scan_on_push && aws_ecr_repository.image.encryption_configuration[0].encryption_type == "KMS"
    error_message = "image tags are immutable, scanned on push and encrypted with the key"
  }
  # tasks → database 5432, nothing else reaches it.
  assert {
    condition     = length(aws_vpc_security_group_ingress_rule.database) == 2 && alltrue([for r in aws_vpc_security_group_ingress_rule.database : r.from_port == 5432 && r.to_port == 5432 && r.cidr_ipv4 == null && contains([aws_security_group.tasks.id, aws_security_group.api.id], r.referenced_security_group_id)])
    error_message = "the database admits 5432 from the tasks' and the API's groups only"
  }
  assert {
    condition     = aws_vpc_security_group_ingress_rule.ops.cidr_ipv4 == "10.1.0.0/16" && aws_vpc_security_group_ingress_rule.ops.from_port == 9090
    error_message = "the ops port is open to the VPC's range only"
  }
  assert {
    condition     = aws_vpc_security_group_ingress_rule.api_from_lb.referenced_security_group_id == aws_security_group.lb.id && aws_vpc_security_group_ingress_rule.api_from_lb.cidr_ipv4 == null
    error_message = "the API admits its load balancer only"
  }
  assert {
    condition     = alltrue([for r in aws_vpc_security_group_ingress_rule.lb : r.cidr_ipv4 == "10.0.0.0/8" && r.from_port == 443])
    error_message = "the load balancer admits HTTPS from console_cidrs only"
  }
  assert {
    condition     = alltrue([for k, s in data.aws_iam_policy_document.kms.statement : !(s.sid == "ServicesOfThisAccount") || length(s.condition) == 1])
    error_message = "services use the key for this account only (aws:SourceAccount)"
  }
  assert {
    condition     = strcontains(output.worker_environment["DATABASE_URL"], "sslmode=verify-full&sslrootcert=/etc/ssl/certs/rds-global-bundle.pem") && startswith(output.worker_environment["DATABASE_URL"], "postgres://orchestrator_worker@")
    error_message = "the workers connect as their own role, TLS verified against the RDS bundle"
  }
  assert {
    condition     = output.api_url != null
    error_message = "the console is behind its load balancer"
  }
  assert {
    condition     = strcontains(output.migrate_command, "aws ecs run-task") && strcontains(output.migrate_command, "--task-definition prod-orchestrator-migrate") && strcontains(output.migrate_command, "assignPublicIp=DISABLED")
    error_message = "the migrate command is complete"
  }
  assert {
    condition     = strcontains(output.catalog_apply_command, "--task-definition prod-orchestrator-catalog-apply")
    error_message = "the catalog-apply command is complete"
  }
}

run "root_with_a_new_vpc" {
  command = apply

  variables {
    create_vpc = true
  }
  assert {
    condition     = length(aws_subnet.private) == 2 && length(aws_vpc_endpoint.interface) == 7 && length(aws_vpc_endpoint.s3) == 1
    error_message = "a new VPC has two private subnets and endpoints for every AWS API the tasks call"
  }
  assert {
    condition     = alltrue([for r in aws_vpc_security_group_egress_rule.aws_apis : r.cidr_ipv4 == "10.40.0.0/16"])
    error_message = "with endpoints, HTTPS leaves the tasks for the VPC only"
  }
  assert {
    condition     = length(aws_default_security_group.this[0].ingress) == 0 && length(aws_default_security_group.this[0].egress) == 0
    error_message = "the new VPC's default security group allows nothing"
  }
}

run "messaging_encrypted_and_tls_only" {
  command = apply
  module {
    source = "./modules/messaging"
  }
  variables {
    kms_key_arn              = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
    run_lifecycle_topic_arns = ["arn:aws:sns:us-east-1:123456789012:runner-started"]
  }
  assert {
    condition = alltrue(concat(
      [for q in aws_sqs_queue.inbound : q.kms_master_key_id == var.kms_key_arn],
      [for q in aws_sqs_queue.dlq : q.kms_master_key_id == var.kms_key_arn],
      [aws_sqs_queue.run_requests.kms_master_key_id == var.kms_key_arn, aws_sqs_queue.run_requests_dlq.kms_master_key_id == var.kms_key_arn],
    ))
    error_message = "every queue is encrypted with the stack's key"
  }
  assert {
    condition     = aws_sns_topic.run_requests[0].kms_master_key_id == var.kms_key_arn && aws_sns_topic.alerts.kms_master_key_id == var.kms_key_arn
    error_message = "both topics are encrypted with the stack's key"
  }
  assert {
    condition     = length(aws_sqs_queue_policy.queue) == 6 && alltrue([for k, d in data.aws_iam_policy_document.queue : anytrue([for s in d.statement : s.sid == "DenyWithoutTLS" && s.effect == "Deny" && anytrue([for c in s.condition : c.variable == "aws:SecureTransport" && contains(c.values, "false")])])])
    error_message = "every queue's policy refuses requests without TLS"
  }
  assert {
    condition     = alltrue([for s in data.aws_iam_policy_document.queue["run_lifecycle"].statement : s.sid != "FromSubscribedTopics" || alltrue([for c in s.condition : c.variable == "aws:SourceArn" && c.values == tolist(["arn:aws:sns:us-east-1:123456789012:runner-started"])])])
    error_message = "a queue admits messages from its subscribed topics only"
  }
  assert {
    condition = (
      aws_s3_bucket_public_access_block.outputs[0].block_public_acls && aws_s3_bucket_public_access_block.outputs[0].block_public_policy &&
      aws_s3_bucket_public_access_block.outputs[0].ignore_public_acls && aws_s3_bucket_public_access_block.outputs[0].restrict_public_buckets
    )
    error_message = "the bucket can never be public"
  }
  assert {
    condition     = one(aws_s3_bucket_server_side_encryption_configuration.outputs[0].rule).apply_server_side_encryption_by_default[0].sse_algorithm == "aws:kms" && one(aws_s3_bucket_server_side_encryption_configuration.outputs[0].rule).apply_server_side_encryption_by_default[0].kms_master_key_id == var.kms_key_arn
    error_message = "the bucket is encrypted with the stack's key"
  }
  assert {
    condition     = aws_s3_bucket_versioning.outputs[0].versioning_configuration[0].status == "Enabled"
    error_message = "the bucket keeps versions"
  }
  assert {
    condition     = anytrue([for s in data.aws_iam_policy_document.outputs_tls_only[0].statement : s.effect == "Deny" && anytrue([for c in s.condition : c.variable == "aws:SecureTransport"])])
    error_message = "the bucket refuses requests without TLS"
  }
}

run "database_encrypted_tls_and_no_password_in_state" {
  command = apply
  module {
    source = "./modules/database"
  }
  variables {
    subnet_ids         = ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]
    security_group_ids = ["sg-0123456789abcdef0"]
    kms_key_arn        = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
  }
  assert {
    condition     = aws_db_instance.this.storage_encrypted && aws_db_instance.this.kms_key_id == var.kms_key_arn && aws_db_instance.this.performance_insights_kms_key_id == var.kms_key_arn
    error_message = "storage, snapshots and Performance Insights are encrypted with the stack's key"
  }
  assert {
    condition     = aws_db_instance.this.manage_master_user_password && aws_db_instance.this.password == null && aws_db_instance.this.master_user_secret_kms_key_id == var.kms_key_arn
    error_message = "RDS keeps the master password in Secrets Manager; none is in the configuration or state"
  }
  assert {
    condition     = anytrue([for p in aws_db_parameter_group.this.parameter : p.name == "rds.force_ssl" && p.value == "1"])
    error_message = "the server refuses connections without TLS"
  }
  assert {
    condition     = !aws_db_instance.this.publicly_accessible && aws_db_instance.this.deletion_protection && aws_db_instance.this.multi_az && aws_db_instance.this.backup_retention_period >= 7 && !aws_db_instance.this.skip_final_snapshot
    error_message = "private, protected from deletion, Multi-AZ and backed up by default"
  }
}

run "workers_least_privilege_and_hardened_tasks" {
  command = apply
  module {
    source = "./modules/workers"
  }
  variables {
    image              = "123456789012.dkr.ecr.us-east-1.amazonaws.com/prod-metric-orchestrator:1.0.0"
    subnet_ids         = ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]
    security_group_ids = ["sg-0123456789abcdef0"]
    kms_key_arn        = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
    database = {
      host              = "db.example.internal"
      port              = 5432
      name              = "orchestrator"
      owner_user        = "orchestrator_owner"
      owner_secret_arn  = "arn:aws:secretsmanager:us-east-1:123456789012:secret:owner-AbCdEf"
      worker_user       = "orchestrator_worker"
      worker_secret_arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:worker-AbCdEf"
      api_user          = "orchestrator_api"
      api_secret_arn    = "arn:aws:secretsmanager:us-east-1:123456789012:secret:api-AbCdEf"
    }
    messaging = {
      projection_updates_queue_url  = "https://sqs.us-east-1.amazonaws.com/123456789012/prod-projection-updates"
      projection_updates_queue_arn  = "arn:aws:sqs:us-east-1:123456789012:prod-projection-updates"
      projection_updates_queue_name = "prod-projection-updates"
      projection_updates_dlq_url    = "https://sqs.us-east-1.amazonaws.com/123456789012/prod-projection-updates-dlq"
      projection_updates_dlq_arn    = "arn:aws:sqs:us-east-1:123456789012:prod-projection-updates-dlq"
      run_lifecycle_queue_url       = "https://sqs.us-east-1.amazonaws.com/123456789012/prod-run-lifecycle"
      run_lifecycle_queue_arn       = "arn:aws:sqs:us-east-1:123456789012:prod-run-lifecycle"
      run_lifecycle_queue_name      = "prod-run-lifecycle"
      run_lifecycle_dlq_url         = "https://sqs.us-east-1.amazonaws.com/123456789012/prod-run-lifecycle-dlq"
      run_lifecycle_dlq_arn         = "arn:aws:sqs:us-east-1:123456789012:prod-run-lifecycle-dlq"
      run_requests_topic_arn        = "arn:aws:sns:us-east-1:123456789012:prod-run-requests"
      alerts_topic_arn              = "arn:aws:sns:us-east-1:123456789012:prod-alerts"
      output_bucket                 = "prod-metric-outputs"
      output_bucket_arn             = "arn:aws:s3:::prod-metric-outputs"
    }
    api = { enabled = true }
  }
  # No IAM action wildcard, no "*" resource in any task or execution role.
  assert {
    condition = alltrue(flatten([
      for d in concat(values(data.aws_iam_policy_document.worker), [data.aws_iam_policy_document.read_database_secret, data.aws_iam_policy_document.oneoff]) : [
        for s in d.statement : concat([for a in s.actions : !strcontains(a, "*")], [for r in s.resources : r != "*"])
      ]
    ]))
    error_message = "a task or execution role has a wildcard action or a \"*\" resource"
  }
  assert {
    condition = toset(flatten([for s in data.aws_iam_policy_document.worker["projection-update-worker"].statement : s.actions])) == toset([
      "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes", "sqs:GetQueueUrl",
      "sqs:SendMessage", "sns:Publish", "s3:PutObject", "s3:GetObject", "kms:Decrypt", "kms:GenerateDataKey",
    ])
    error_message = "the projection-update worker may do exactly what it does"
  }
  assert {
    condition     = alltrue([for s in data.aws_iam_policy_document.worker["run-lifecycle-worker"].statement : s.sid != "ConsumeOwnQueue" || s.resources == toset(["arn:aws:sqs:us-east-1:123456789012:prod-run-lifecycle"])])
    error_message = "each worker consumes its own queue only"
  }
  assert {
    condition     = toset(flatten([for s in data.aws_iam_policy_document.oneoff.statement : s.actions])) == toset(["s3:GetObject", "kms:Decrypt"]) && alltrue([for s in data.aws_iam_policy_document.oneoff.statement : s.sid != "ReadTheCatalog" || s.resources == toset(["arn:aws:s3:::prod-metric-outputs/catalog/catalog.yaml"])])
    error_message = "the one-off tasks read the catalog file and nothing else"
  }
  assert {
    condition     = alltrue([for t in concat(values(aws_ecs_task_definition.worker), aws_ecs_task_definition.api) : jsondecode(t.container_definitions)[0].readonlyRootFilesystem && jsondecode(t.container_definitions)[0].healthCheck.command[1] == "orchestrator"]) && alltrue([for t in values(aws_ecs_task_definition.oneoff) : jsondecode(t.container_definitions)[0].readonlyRootFilesystem])
    error_message = "every container has a read-only root filesystem, and the services a health check"
  }
  assert {
    condition     = alltrue([for s in concat(values(aws_ecs_service.worker), aws_ecs_service.api) : s.deployment_circuit_breaker[0].enable && s.deployment_circuit_breaker[0].rollback])
    error_message = "a failing release is rolled back"
  }
  assert {
    condition     = alltrue([for g in concat(values(aws_cloudwatch_log_group.worker), aws_cloudwatch_log_group.api, [aws_cloudwatch_log_group.oneoff]) : g.kms_key_id == var.kms_key_arn && g.retention_in_days >= 365])
    error_message = "logs are encrypted with the stack's key and kept a year"
  }
  assert {
    condition = alltrue([for t in values(aws_ecs_task_definition.worker) : (
      anytrue([for e in jsondecode(t.container_definitions)[0].environment : e.name == "DATABASE_URL" && e.value == "postgres://orchestrator_worker@db.example.internal:5432/orchestrator?sslmode=verify-full&sslrootcert=/etc/ssl/certs/rds-global-bundle.pem"]) &&
      jsondecode(t.container_definitions)[0].secrets == [{ name = "DATABASE_PASSWORD", valueFrom = "arn:aws:secretsmanager:us-east-1:123456789012:secret:worker-AbCdEf" }]
    )])
    error_message = "workers connect as the worker role with verify-full, the password from its secret"
  }
  assert {
    condition     = anytrue([for e in jsondecode(aws_ecs_task_definition.api[0].container_definitions)[0].environment : e.name == "DATABASE_URL" && startswith(e.value, "postgres://orchestrator_api@")])
    error_message = "the API connects as the API role"
  }
  assert {
    condition     = jsondecode(aws_ecs_task_definition.oneoff["migrate"].container_definitions)[0].secrets[0].valueFrom == "arn:aws:secretsmanager:us-east-1:123456789012:secret:owner-AbCdEf:password::"
    error_message = "migrate reads the owner's password from the JSON secret RDS keeps"
  }
}
