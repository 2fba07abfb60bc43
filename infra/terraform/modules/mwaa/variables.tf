variable "name" {
  description = "Name prefix, e.g. batchml-prod. The environment is named <name>-airflow."
  type        = string
}

variable "airflow_version" {
  description = "Apache Airflow version offered by MWAA (must be one MWAA supports in the region)."
  type        = string
}

variable "environment_class" {
  description = "MWAA environment class: mw1.micro, mw1.small, mw1.medium, mw1.large, ..."
  type        = string
}

variable "min_workers" {
  description = "Minimum number of Celery workers."
  type        = number
}

variable "max_workers" {
  description = "Maximum number of Celery workers."
  type        = number
}

variable "webserver_access_mode" {
  description = "PRIVATE_ONLY (UI reachable only from the VPC) or PUBLIC_ONLY (IAM-authenticated public URL)."
  type        = string
  default     = "PRIVATE_ONLY"

  validation {
    condition     = contains(["PRIVATE_ONLY", "PUBLIC_ONLY"], var.webserver_access_mode)
    error_message = "webserver_access_mode must be PRIVATE_ONLY or PUBLIC_ONLY."
  }
}

variable "vpc_id" {
  description = "VPC of the environment."
  type        = string
}

variable "vpc_cidr" {
  description = "CIDR of the VPC (egress to the service-managed metadata database)."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets in two different AZs; MWAA uses the first two."
  type        = list(string)
}

variable "source_bucket_id" {
  description = "Name of the bucket holding DAGs, plugins and requirements."
  type        = string
}

variable "source_bucket_arn" {
  description = "ARN of the bucket holding DAGs, plugins and requirements (must be versioned, not public)."
  type        = string
}

variable "airflow_prefix" {
  description = "Key prefix (no slashes at the ends) for Airflow files in the source bucket; DAGs go to <prefix>/dags."
  type        = string
}

variable "code_prefix" {
  description = "Key prefix (no slashes at the ends) of code releases in the source bucket; the DAG side reads <prefix>/releases/<id>/conf."
  type        = string
}

variable "files" {
  description = "Keys (relative to the bucket) of requirements.txt, plugins.zip and the startup script, e.g. airflow/requirements.txt."
  type = object({
    requirements   = string
    plugins        = string
    startup_script = string
  })
}

variable "release" {
  description = "S3 object versions of the three files as uploaded by `make deploy`; null until the first deploy (MWAA then runs without them)."
  type = object({
    requirements_s3_object_version   = string
    plugins_s3_object_version        = string
    startup_script_s3_object_version = string
  })
  default = null
}

variable "lake_access" {
  description = "What the DAG-side tasks may touch in the lake and artifacts buckets: bucket ARNs, list prefixes and object ARN patterns to read and to write."
  type = object({
    bucket_arns       = list(string)
    list_prefixes     = list(string)
    read_object_arns  = list(string)
    write_object_arns = list(string)
  })
}

variable "kms_key_arn" {
  description = "ARN of the customer-managed KMS key for the environment, logs and secrets."
  type        = string
}

variable "log_retention_days" {
  description = "Retention of the Airflow log groups, in days."
  type        = number
}

variable "secrets_prefix" {
  description = "Secrets Manager name prefix; Airflow uses <prefix>/airflow/connections and <prefix>/airflow/variables."
  type        = string
}

variable "secret_recovery_window_in_days" {
  description = "Days a deleted secret can be restored (0 deletes immediately)."
  type        = number
  default     = 7
}

variable "emr_connection_id" {
  description = "Airflow connection ID (aws_conn_id) the DAGs use for EMR Serverless."
  type        = string
  default     = "batchml_emr_serverless"
}

variable "emr_application_id" {
  description = "ID of the EMR Serverless application (stored as an Airflow variable)."
  type        = string
}

variable "emr_application_arn" {
  description = "ARN of the EMR Serverless application the DAGs may run jobs on."
  type        = string
}

variable "emr_job_role_arn" {
  description = "ARN of the Spark job role the DAGs may pass to EMR Serverless."
  type        = string
}

variable "sns_topic_arn" {
  description = "ARN of the alert topic the DAGs may publish to."
  type        = string
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
