variable "name" {
  description = "Name prefix, e.g. batchml-prod."
  type        = string
}

variable "release_label" {
  description = "EMR release label of the Spark runtime, e.g. emr-spark-8.0.0 (Spark 4.0.2, Python 3.11)."
  type        = string
}

variable "architecture" {
  description = "CPU architecture of the workers: X86_64 or ARM64 (Graviton, ~20% cheaper)."
  type        = string
  default     = "X86_64"

  validation {
    condition     = contains(["X86_64", "ARM64"], var.architecture)
    error_message = "architecture must be X86_64 or ARM64."
  }
}

variable "max_cpu" {
  description = "Upper bound on vCPU across all running jobs (hard cost cap), e.g. \"32 vCPU\"."
  type        = string
}

variable "max_memory" {
  description = "Upper bound on memory across all running jobs, e.g. \"128 GB\"."
  type        = string
}

variable "max_disk" {
  description = "Upper bound on disk across all running jobs, e.g. \"1000 GB\"."
  type        = string
}

variable "idle_timeout_minutes" {
  description = "Minutes of idleness after which the application stops."
  type        = number
  default     = 15
}

variable "vpc_id" {
  description = "VPC the Spark workers run in."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets for the Spark workers (need a route to S3 via gateway endpoint or NAT)."
  type        = list(string)
}

variable "landing_bucket_arn" {
  description = "ARN of the landing bucket (read-only for jobs)."
  type        = string
}

variable "lake_bucket_arn" {
  description = "ARN of the lake bucket (Delta tables, read/write)."
  type        = string
}

variable "artifacts_bucket_arn" {
  description = "ARN of the artifacts bucket (MLflow artifacts and reports, read/write; job code read-only)."
  type        = string
}

variable "landing_prefix" {
  description = "Key prefix (no slashes at the ends) of landing data."
  type        = string
}

variable "lake_prefix" {
  description = "Key prefix (no slashes at the ends) of the Delta lake."
  type        = string
}

variable "artifacts_prefix" {
  description = "Key prefix (no slashes at the ends) of MLflow artifacts and reports."
  type        = string
}

variable "code_prefix" {
  description = "Key prefix (no slashes at the ends) of job code (entry points, Python archives) in the artifacts bucket."
  type        = string
}

variable "log_prefix" {
  description = "Key prefix (no slashes at the ends) in the artifacts bucket for S3 copies of job logs."
  type        = string
}

variable "readable_secret_arns" {
  description = "Secrets Manager secrets the jobs may read, by a static key (EMR.secret@ values in the Spark conf)."
  type        = map(string)
  default     = {}
}

variable "kms_key_arn" {
  description = "ARN of the only KMS key the jobs may use."
  type        = string
}

variable "log_group_arn" {
  description = "ARN of the CloudWatch log group for Spark driver/executor logs."
  type        = string
}

variable "sns_topic_arn" {
  description = "ARN of the alert topic the jobs may publish to."
  type        = string
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
