variable "table_name" {
  description = "Name of the DynamoDB table, e.g. batchml-prod-online-features (online.dynamodb.table)."
  type        = string
}

variable "kms_key_arn" {
  description = "ARN of the customer-managed KMS key that encrypts the table."
  type        = string
}

variable "writer_role_name" {
  description = "Name of the IAM role that materializes into the table (the EMR Serverless job role)."
  type        = string
}

variable "deletion_protection" {
  description = "Refuse DeleteTable until this is switched off."
  type        = bool
  default     = true
}

variable "tags" {
  description = "Tags added to the table."
  type        = map(string)
  default     = {}
}
