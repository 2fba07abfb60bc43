variable "name" {
  description = "Name prefix, e.g. batchml-prod."
  type        = string
}

variable "kms_key_arn" {
  description = "ARN of the customer-managed KMS key for log groups and the SNS topic."
  type        = string
}

variable "log_group_names" {
  description = "CloudWatch log groups to create (encrypted, with retention), by a static key such as spark."
  type        = map(string)
}

variable "log_retention_days" {
  description = "Retention of the log groups, in days (must be a CloudWatch-supported value)."
  type        = number
}

variable "alert_email_addresses" {
  description = "E-mail addresses subscribed to the alert topic (each must confirm)."
  type        = list(string)
  default     = []
}

variable "emr_application_id" {
  description = "EMR Serverless application whose FAILED job runs are sent to the alert topic."
  type        = string
}

variable "mwaa_environment_name" {
  description = "MWAA environment whose task failures and scheduler heartbeat are watched."
  type        = string
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
