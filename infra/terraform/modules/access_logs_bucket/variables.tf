variable "bucket_name" {
  description = "Globally unique name of the access-log bucket."
  type        = string
}

variable "source_bucket_arns" {
  description = "ARNs (or ARN patterns) of the buckets allowed to deliver access logs here."
  type        = list(string)
}

variable "retention_days" {
  description = "Days to keep access-log objects."
  type        = number
  default     = 365
}

variable "force_destroy" {
  description = "Allow `terraform destroy` to delete the bucket while it still holds logs."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags added to the bucket."
  type        = map(string)
  default     = {}
}
