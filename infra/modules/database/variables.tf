variable "prefix" {
  type = string
}

variable "subnet_ids" {
  description = "Private subnets for the database (two Availability Zones at least)."
  type        = list(string)
}

variable "security_group_ids" {
  description = "The database's security groups (5432 from the tasks only)."
  type        = list(string)
}

variable "kms_key_arn" {
  description = "Encrypts the storage, snapshots, Performance Insights and the passwords' secrets."
  type        = string
}

variable "engine_version" {
  description = "PostgreSQL major version (RDS picks the newest minor; minor upgrades are automatic)."
  type        = string
  default     = "16"
}

variable "instance_class" {
  type    = string
  default = "db.t4g.medium"
}

variable "allocated_storage_gb" {
  type    = number
  default = 20
}

variable "max_allocated_storage_gb" {
  description = "Storage autoscaling ceiling."
  type        = number
  default     = 200
}

variable "multi_az" {
  description = "A standby in another Availability Zone (about twice the instance cost)."
  type        = bool
  default     = true
}

variable "deletion_protection" {
  type    = bool
  default = true
}

variable "backup_retention_days" {
  type    = number
  default = 14
}

variable "database_name" {
  type    = string
  default = "orchestrator"
}

variable "owner_user" {
  description = "The master user: owns the schema, runs `orchestrator migrate` and `catalog apply`."
  type        = string
  default     = "orchestrator_owner"
}


variable "tags" {
  type    = map(string)
  default = {}
}
