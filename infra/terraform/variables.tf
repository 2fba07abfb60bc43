# ---------------------------------------------------------------- identity
variable "project" {
  description = "Project name, the first part of every resource name."
  type        = string
  default     = "batchml"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,15}$", var.project))
    error_message = "project must be 2-16 lowercase letters, digits or hyphens."
  }
}

variable "environment" {
  description = "Environment name (dev, staging or prod); selects envs/<environment>.tfvars."
  type        = string

  validation {
    condition     = contains(["dev", "staging", "prod"], var.environment)
    error_message = "environment must be dev, staging or prod."
  }
}

variable "aws_region" {
  description = "AWS region for every resource, e.g. eu-west-1."
  type        = string
}

variable "tags" {
  description = "Extra tags for every resource (Project, Environment and ManagedBy are always set)."
  type        = map(string)
  default     = {}
}

# ---------------------------------------------------------------- network (bring your own VPC)
variable "vpc_id" {
  description = "Existing VPC for MWAA, EMR Serverless and MLflow. It needs private subnets with a route to AWS APIs (NAT or VPC endpoints incl. an S3 gateway endpoint)."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets in at least two AZs. MWAA uses the first two; EMR Serverless and MLflow use all."
  type        = list(string)

  validation {
    condition     = length(var.private_subnet_ids) >= 2
    error_message = "private_subnet_ids needs at least two subnets in different AZs (MWAA requirement)."
  }
}

# ---------------------------------------------------------------- encryption and storage
variable "kms_deletion_window_in_days" {
  description = "Waiting period (7-30 days) before the customer-managed KMS key is deleted."
  type        = number
  default     = 30
}

variable "landing_noncurrent_version_expiration_days" {
  description = "Days to keep noncurrent versions of landing objects (raw inputs can be restored within this window)."
  type        = number
  default     = 30
}

variable "lake_noncurrent_version_expiration_days" {
  description = "Days to keep noncurrent versions of lake objects: the window in which an overwritten or deleted Delta file (including a VACUUM by mistake) can be restored from S3. Prod keeps at least 14."
  type        = number
  default     = 14

  validation {
    condition     = var.environment != "prod" || var.lake_noncurrent_version_expiration_days >= 14
    error_message = "prod keeps noncurrent lake versions for at least 14 days."
  }
}

variable "artifacts_noncurrent_version_expiration_days" {
  description = "Days to keep noncurrent versions of MLflow artifacts, reports and DAG files."
  type        = number
  default     = 90
}

variable "access_log_retention_days" {
  description = "Days to keep S3 server access logs."
  type        = number
  default     = 365
}

variable "force_destroy_buckets" {
  description = "Let `terraform destroy` delete non-empty buckets. Only for throwaway environments; never in prod."
  type        = bool
  default     = false
}

# ---------------------------------------------------------------- monitoring and secrets
variable "log_retention_days" {
  description = "Retention of every CloudWatch log group, in days (a CloudWatch-supported value)."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a value CloudWatch Logs supports (e.g. 30, 90, 365)."
  }
}

variable "alert_email_addresses" {
  description = "E-mail addresses subscribed to the pipeline alert topic (not secrets; each must confirm)."
  type        = list(string)
  default     = []
}

variable "secret_recovery_window_in_days" {
  description = "Days a deleted Secrets Manager secret can still be restored (7-30; 0 deletes at once)."
  type        = number
  default     = 7
}

# ---------------------------------------------------------------- EMR Serverless
variable "emr_release_label" {
  description = "EMR release of the Spark runtime. batchml needs Spark 4: emr-spark-8.0.0 runs Spark 4.0.2 and Python 3.11 (emr-7.x runs Spark 3.5 and cannot run the jobs)."
  type        = string
  default     = "emr-spark-8.0.0"

  validation {
    condition     = !startswith(var.emr_release_label, "emr-7.") && !startswith(var.emr_release_label, "emr-6.")
    error_message = "EMR 6.x/7.x run Spark 3.x; batchml needs a Spark 4 runtime such as emr-spark-8.0.0."
  }
}

variable "emr_architecture" {
  description = "Worker CPU architecture: X86_64 or ARM64 (Graviton, cheaper)."
  type        = string
  default     = "X86_64"
}

variable "emr_max_cpu" {
  description = "Maximum vCPU of all concurrently running Spark workers: the hard cost ceiling."
  type        = string
  default     = "32 vCPU"
}

variable "emr_max_memory" {
  description = "Maximum memory of all concurrently running Spark workers."
  type        = string
  default     = "128 GB"
}

variable "emr_max_disk" {
  description = "Maximum disk of all concurrently running Spark workers."
  type        = string
  default     = "1000 GB"
}

variable "emr_idle_timeout_minutes" {
  description = "Minutes of idleness after which the EMR Serverless application stops."
  type        = number
  default     = 15
}

# ---------------------------------------------------------------- MWAA
variable "mwaa_airflow_version" {
  description = "Airflow version of the MWAA environment. Must equal the apache-airflow pin in infra/mwaa/constraints.txt (the one place it is pinned; tests/infra checks)."
  type        = string
  default     = "3.3.1"
}

variable "mwaa_environment_class" {
  description = "MWAA environment class; mw1.micro/small are enough for a handful of daily DAGs."
  type        = string
  default     = "mw1.small"
}

variable "mwaa_min_workers" {
  description = "Minimum Celery workers."
  type        = number
  default     = 1
}

variable "mwaa_max_workers" {
  description = "Maximum Celery workers (autoscaling ceiling)."
  type        = number
  default     = 2
}

variable "mwaa_webserver_access_mode" {
  description = "PRIVATE_ONLY (UI only from the VPC, the default) or PUBLIC_ONLY (IAM-authenticated public URL)."
  type        = string
  default     = "PRIVATE_ONLY"
}

variable "mwaa_release" {
  description = "S3 object versions of airflow/requirements.txt, airflow/plugins.zip and airflow/startup.sh written by `make deploy` (envs/<env>.release.tfvars.json). null on the first apply, before anything is uploaded: MWAA then starts without them."
  type = object({
    requirements_s3_object_version   = string
    plugins_s3_object_version        = string
    startup_script_s3_object_version = string
  })
  default = null
}

# ---------------------------------------------------------------- MLflow (optional)
variable "enable_mlflow_server" {
  description = "Create the self-hosted MLflow tracking server (ECS Fargate + RDS PostgreSQL). When false, point mlflow.tracking_uri at a managed MLflow instead."
  type        = bool
  default     = false
}

variable "mlflow_image_tag" {
  description = "Tag of the MLflow server image in the stack's ECR repository (built from infra/mlflow/Dockerfile and pushed before enabling the server)."
  type        = string
  default     = "3.17.2-1"
}

variable "mlflow_domain_name" {
  description = "Host name of the MLflow server, e.g. mlflow.prod.example.com. An ACM certificate is issued for it (DNS validation in mlflow_route53_zone_id) and it points at the internal load balancer. Required when enable_mlflow_server is true."
  type        = string
  default     = ""
}

variable "mlflow_route53_zone_id" {
  description = "Public Route 53 hosted zone of mlflow_domain_name: ACM validates the certificate through public DNS, and the alias to the internal load balancer resolves to private addresses only."
  type        = string
  default     = ""
}

variable "mlflow_task_cpu" {
  description = "Fargate CPU units of the MLflow task (1024 = 1 vCPU)."
  type        = number
  default     = 512
}

variable "mlflow_task_memory" {
  description = "Fargate memory (MiB) of the MLflow task."
  type        = number
  default     = 1024
}

variable "mlflow_desired_count" {
  description = "Number of MLflow server tasks."
  type        = number
  default     = 1
}

variable "mlflow_db_instance_class" {
  description = "RDS instance class of the MLflow backend store."
  type        = string
  default     = "db.t4g.micro"
}

variable "mlflow_db_multi_az" {
  description = "Run the MLflow database Multi-AZ (doubles its cost)."
  type        = bool
  default     = false
}

variable "mlflow_db_deletion_protection" {
  description = "Deletion protection of the MLflow database. Keep true in prod; dev may set false."
  type        = bool
  default     = true
}

variable "mlflow_allowed_cidrs" {
  description = "Extra CIDR blocks (e.g. a VPN range) that may reach the MLflow load balancer on 443, besides the Spark and Airflow security groups."
  type        = list(string)
  default     = []
}

variable "mlflow_db_backup_retention_days" {
  description = "Days of automated backups of the MLflow database."
  type        = number
  default     = 7
}

# ---------------------------------------------------------------- backups
variable "enable_backup" {
  description = "Back up the lake bucket (its ops.* and audit tables cannot be rebuilt from landing) and the artifacts bucket (models, reports, releases) with AWS Backup."
  type        = bool
  default     = true
}

variable "backup_retention_days" {
  description = "Days a daily recovery point is kept; continuous backups (point-in-time restore) keep min(this, 35) days."
  type        = number
  default     = 35

  validation {
    condition     = var.backup_retention_days >= 1
    error_message = "backup_retention_days must be at least 1."
  }
}

variable "backup_copy_vault_arn" {
  description = "Optional backup vault in another region (or account) that every daily recovery point is copied to, for regional disaster recovery. null keeps recovery points in this region only."
  type        = string
  default     = null
}
