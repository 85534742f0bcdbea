# The network the stack runs in: an existing VPC and private subnets by
# default (var.vpc_id, var.subnet_ids), or a new VPC with two private subnets,
# no internet route and VPC endpoints for the AWS APIs the tasks call
# (var.create_vpc). Security groups allow exactly: tasks → database 5432;
# load balancer → API; the ops port from inside the VPC only; tasks → AWS
# APIs on 443.

data "aws_vpc" "existing" {
  count = var.create_vpc ? 0 : 1
  id    = var.vpc_id
}

data "aws_availability_zones" "available" {
  count = var.create_vpc ? 1 : 0
  state = "available"
}

locals {
  vpc_id     = var.create_vpc ? aws_vpc.this[0].id : var.vpc_id
  vpc_cidr   = var.create_vpc ? aws_vpc.this[0].cidr_block : data.aws_vpc.existing[0].cidr_block
  subnet_ids = var.create_vpc ? aws_subnet.private[*].id : var.subnet_ids
  endpoints  = var.create_vpc || var.vpc_endpoints
  interface_endpoints = toset([
    "sqs", "sns", "logs", "ecr.api", "ecr.dkr", "secretsmanager", "kms",
  ])
}

resource "aws_vpc" "this" {
  count                = var.create_vpc ? 1 : 0
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true
  tags                 = { Name = "${var.prefix}metric-orchestrator" }
}

# The default security group of a new VPC allows nothing.
resource "aws_default_security_group" "this" {
  count  = var.create_vpc ? 1 : 0
  vpc_id = aws_vpc.this[0].id
}

resource "aws_subnet" "private" {
  count             = var.create_vpc ? 2 : 0
  vpc_id            = aws_vpc.this[0].id
  cidr_block        = cidrsubnet(var.vpc_cidr, 4, count.index)
  availability_zone = data.aws_availability_zones.available[0].names[count.index]
  tags              = { Name = "${var.prefix}metric-orchestrator-private-${count.index}" }
}

resource "aws_route_table" "private" {
  count  = var.create_vpc ? 1 : 0
  vpc_id = aws_vpc.this[0].id
  tags   = { Name = "${var.prefix}metric-orchestrator-private" }
}

resource "aws_route_table_association" "private" {
  count          = var.create_vpc ? 2 : 0
  subnet_id      = aws_subnet.private[count.index].id
  route_table_id = aws_route_table.private[0].id
}

resource "aws_cloudwatch_log_group" "flow" {
  count             = var.create_vpc ? 1 : 0
  name              = "/vpc/${var.prefix}metric-orchestrator"
  retention_in_days = 365
  kms_key_id        = aws_kms_key.main.arn
}

data "aws_iam_policy_document" "flow_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["vpc-flow-logs.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "flow" {
  count              = var.create_vpc ? 1 : 0
  name               = "${var.prefix}metric-orchestrator-flow-logs"
  assume_role_policy = data.aws_iam_policy_document.flow_assume.json
}

data "aws_iam_policy_document" "flow" {
  count = var.create_vpc ? 1 : 0
  statement {
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
    resources = ["${aws_cloudwatch_log_group.flow[0].arn}:*"]
  }
}

resource "aws_iam_role_policy" "flow" {
  count  = var.create_vpc ? 1 : 0
  name   = "${var.prefix}metric-orchestrator-flow-logs"
  role   = aws_iam_role.flow[0].id
  policy = data.aws_iam_policy_document.flow[0].json
}

resource "aws_flow_log" "this" {
  count           = var.create_vpc ? 1 : 0
  vpc_id          = aws_vpc.this[0].id
  traffic_type    = "REJECT"
  log_destination = aws_cloudwatch_log_group.flow[0].arn
  iam_role_arn    = aws_iam_role.flow[0].arn
}

resource "aws_vpc_endpoint" "s3" {
  count             = local.endpoints && var.create_vpc ? 1 : 0
  vpc_id            = local.vpc_id
  service_name      = "com.amazonaws.${var.region}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = aws_route_table.private[*].id
}

resource "aws_vpc_endpoint" "interface" {
  for_each            = local.endpoints ? local.interface_endpoints : toset([])
  vpc_id              = local.vpc_id
  service_name        = "com.amazonaws.${var.region}.${each.key}"
  vpc_endpoint_type   = "Interface"
  subnet_ids          = local.subnet_ids
  security_group_ids  = [aws_security_group.endpoints[0].id]
  private_dns_enabled = true
}

# ---- security groups ----

resource "aws_security_group" "tasks" {
  name        = "${var.prefix}orchestrator-tasks"
  description = "Workers and one-off tasks: out to PostgreSQL and the AWS APIs; in, the ops port from the VPC"
  vpc_id      = local.vpc_id
}

resource "aws_security_group" "api" {
  #checkov:skip=CKV2_AWS_5:Attached to the API service by modules/workers when api.enabled; it exists unattached otherwise so that the database rule can name it.
  name        = "${var.prefix}orchestrator-api"
  description = "orchestrator serve: in from the load balancer (or the VPC without one); out to PostgreSQL and the AWS APIs"
  vpc_id      = local.vpc_id
}

resource "aws_security_group" "lb" {
  #checkov:skip=CKV2_AWS_5:Attached to the console load balancer by modules/workers when api.load_balancer is set.
  name        = "${var.prefix}orchestrator-lb"
  description = "The console's load balancer: HTTPS in from the allowed networks; out to the API and the identity provider"
  vpc_id      = local.vpc_id
}

resource "aws_security_group" "database" {
  name        = "${var.prefix}orchestrator-database"
  description = "PostgreSQL: 5432 from the tasks and the API only; nothing out"
  vpc_id      = local.vpc_id
}

resource "aws_security_group" "endpoints" {
  count       = local.endpoints ? 1 : 0
  name        = "${var.prefix}orchestrator-endpoints"
  description = "VPC endpoints of the AWS APIs: 443 from the VPC"
  vpc_id      = local.vpc_id
}

resource "aws_vpc_security_group_egress_rule" "to_database" {
  for_each                     = { tasks = aws_security_group.tasks.id, api = aws_security_group.api.id }
  security_group_id            = each.value
  description                  = "PostgreSQL"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.database.id
}

resource "aws_vpc_security_group_ingress_rule" "database" {
  for_each                     = { tasks = aws_security_group.tasks.id, api = aws_security_group.api.id }
  security_group_id            = aws_security_group.database.id
  description                  = "PostgreSQL from the ${each.key}"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = each.value
}

# SQS, SNS, S3, ECR, CloudWatch Logs, Secrets Manager and KMS have no fixed
# addresses: through a NAT gateway they are anywhere on 443; with VPC
# endpoints they are in the VPC.
resource "aws_vpc_security_group_egress_rule" "aws_apis" {
  #checkov:skip=CKV_AWS_382:HTTPS to the AWS APIs, whose addresses are not fixed; with VPC endpoints the rule is limited to the VPC.
  for_each          = { tasks = aws_security_group.tasks.id, api = aws_security_group.api.id }
  security_group_id = each.value
  description       = "HTTPS to the AWS APIs (image pull, logs, secrets, queues, topics, bucket, key)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = local.endpoints ? local.vpc_cidr : "0.0.0.0/0"
}

resource "aws_vpc_security_group_ingress_rule" "ops" {
  security_group_id = aws_security_group.tasks.id
  description       = "Ops endpoints (/healthz, /readyz, /metrics) from inside the VPC"
  ip_protocol       = "tcp"
  from_port         = var.ops_port
  to_port           = var.ops_port
  cidr_ipv4         = local.vpc_cidr
}

resource "aws_vpc_security_group_ingress_rule" "api_from_lb" {
  security_group_id            = aws_security_group.api.id
  description                  = "The API from its load balancer"
  ip_protocol                  = "tcp"
  from_port                    = var.api_port
  to_port                      = var.api_port
  referenced_security_group_id = aws_security_group.lb.id
}

resource "aws_vpc_security_group_ingress_rule" "lb" {
  for_each          = toset(var.console_cidrs)
  security_group_id = aws_security_group.lb.id
  description       = "HTTPS to the console from ${each.key}"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.key
}

resource "aws_vpc_security_group_egress_rule" "lb_to_api" {
  security_group_id            = aws_security_group.lb.id
  description                  = "Forward to the API"
  ip_protocol                  = "tcp"
  from_port                    = var.api_port
  to_port                      = var.api_port
  referenced_security_group_id = aws_security_group.api.id
}

# The load balancer itself calls the identity provider's token and user-info
# endpoints while signing people in.
resource "aws_vpc_security_group_egress_rule" "lb_to_idp" {
  #checkov:skip=CKV_AWS_382:The identity provider (Cognito, Okta, Entra ID...) is on the internet at addresses that are not fixed.
  security_group_id = aws_security_group.lb.id
  description       = "HTTPS to the identity provider"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_ingress_rule" "endpoints" {
  count             = local.endpoints ? 1 : 0
  security_group_id = aws_security_group.endpoints[0].id
  description       = "HTTPS from the VPC"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = local.vpc_cidr
}
