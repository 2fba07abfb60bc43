variable "name" {
  description = "Name prefix, e.g. batchml-prod."
  type        = string
}

variable "kms_key_arn" {
  description = "ARN of the customer-managed KMS key that encrypts the backup vault."
  type        = string
}

variable "bucket_arns" {
  description = "Buckets to back up, by a static key (their ARNs are known only after apply). Each must be versioned."
  type        = map(string)
}

variable "retention_days" {
  description = "Days a daily recovery point is kept (continuous backups keep min(this, 35))."
  type        = number
}

variable "copy_vault_arn" {
  description = "Optional vault in another region or account that daily recovery points are copied to; null for none."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
