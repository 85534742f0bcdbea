# Terraform state holds resource ids and, where the provider keeps them,
# settings (the OIDC client secret of api.load_balancer.oidc among them; no
# database password: RDS keeps the master's and the role passwords are
# written write-only). Keep it in an encrypted, versioned S3 bucket with
# locking, not on a laptop: uncomment, fill in, and run `terraform init
# -migrate-state` (docs/deploy.md, "State").
#
# terraform {
#   backend "s3" {
#     bucket       = "my-company-terraform-state"
#     key          = "metric-orchestrator/prod.tfstate"
#     region       = "us-east-1"
#     encrypt      = true
#     kms_key_id   = "alias/terraform-state"
#     use_lockfile = true # S3-native locking (Terraform >= 1.10): no DynamoDB table
#   }
# }
