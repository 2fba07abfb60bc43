variable "name" {
  description = "Name prefix, e.g. batchml-prod."
  type        = string
}

variable "image_tag" {
  description = "Tag of the server image in this module's ECR repository (built from infra/mlflow/Dockerfile)."
  type        = string
}

variable "domain_name" {
  description = "Host name of the tracking server; the ACM certificate is issued for it."
  type        = string
}

variable "route53_zone_id" {
  description = "Route 53 zone of domain_name: ACM DNS validation and the alias to the load balancer."
  type        = string
}

variable "task_cpu" {
  description = "Fargate task CPU units (1024 = 1 vCPU)."
  type        = number
  default     = 512
}

variable "task_memory" {
  description = "Fargate task memory in MiB."
  type        = number
  default     = 1024
}

variable "desired_count" {
  description = "Number of MLflow server tasks."
  type        = number
  default     = 1
}

variable "vpc_id" {
  description = "VPC of the server and database."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets (at least two AZs) for tasks and the database."
  type        = list(string)
}

variable "client_security_group_ids" {
  description = "Security groups allowed to reach the load balancer, by a static key (e.g. spark = sg-...)."
  type        = map(string)
}

variable "client_cidrs" {
  description = "CIDR blocks (e.g. a VPN) allowed to reach the load balancer on 443."
  type        = list(string)
  default     = []
}

variable "access_log_bucket_id" {
  description = "Bucket receiving the load balancer's access logs (SSE-S3, allows ELB log delivery)."
  type        = string
}

variable "secrets_prefix" {
  description = "Secrets Manager name prefix; the pipeline password is <prefix>/mlflow/pipeline-password."
  type        = string
}

variable "secret_recovery_window_in_days" {
  description = "Days a deleted secret can be restored (0 deletes immediately)."
  type        = number
  default     = 7
}

variable "sns_topic_arn" {
  description = "Alert topic the service and database alarms notify."
  type        = string
}

variable "artifacts_bucket_id" {
  description = "Name of the artifacts bucket."
  type        = string
}

variable "artifacts_bucket_arn" {
  description = "ARN of the artifacts bucket."
  type        = string
}

variable "artifact_prefix" {
  description = "Key prefix (no slashes at the ends) of MLflow artifacts, e.g. artifacts/mlflow."
  type        = string
}

variable "kms_key_arn" {
  description = "ARN of the customer-managed KMS key (RDS storage, its password secret, Performance Insights)."
  type        = string
}

variable "log_group_name" {
  description = "Name of the CloudWatch log group for the server container."
  type        = string
}

variable "log_group_arn" {
  description = "ARN of the CloudWatch log group for the server container."
  type        = string
}

variable "db_engine_major_version" {
  description = "PostgreSQL major version (minor versions are upgraded automatically)."
  type        = string
  default     = "16"
}

variable "db_instance_class" {
  description = "RDS instance class of the backend store."
  type        = string
  default     = "db.t4g.micro"
}

variable "db_allocated_storage_gb" {
  description = "Initial storage of the backend store in GB."
  type        = number
  default     = 20
}

variable "db_max_allocated_storage_gb" {
  description = "Storage autoscaling ceiling in GB."
  type        = number
  default     = 100
}

variable "db_multi_az" {
  description = "Run the database Multi-AZ (doubles its cost)."
  type        = bool
  default     = false
}

variable "db_backup_retention_days" {
  description = "Days of automated backups."
  type        = number
  default     = 7
}

variable "deletion_protection" {
  description = "Protect the database and the load balancer from deletion (true in prod). When false, no final snapshot is taken on destroy."
  type        = bool
  default     = true
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
