# batchml on AWS: the root module composes ./modules. See README.md.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

data "aws_vpc" "this" {
  id = var.vpc_id
}

locals {
  name       = "${var.project}-${var.environment}"
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition

  # Bucket names are global: account and region make them unique.
  bucket_names = {
    for purpose in ["landing", "lake", "artifacts", "access-logs"] :
    purpose => "${local.name}-${purpose}-${local.account_id}-${var.aws_region}"
  }

  # Key prefixes inside the buckets (what conf/prod/batchml.yaml points at).
  landing_prefix   = "landing"
  lake_prefix      = "lake"
  artifacts_prefix = "artifacts"
  code_prefix      = "code"
  airflow_prefix   = "airflow"

  secrets_prefix = "${var.project}/${var.environment}"

  log_groups = {
    spark    = "/${var.project}/${var.environment}/emr-serverless"
    pipeline = "/${var.project}/${var.environment}/pipeline"
    mlflow   = "/${var.project}/${var.environment}/mlflow"
  }
}

module "kms" {
  source = "./modules/kms"

  name                    = local.name
  deletion_window_in_days = var.kms_deletion_window_in_days
}

# ---------------------------------------------------------------- storage
module "access_logs_bucket" {
  source = "./modules/access_logs_bucket"

  bucket_name    = local.bucket_names["access-logs"]
  retention_days = var.access_log_retention_days
  force_destroy  = var.force_destroy_buckets
  source_bucket_arns = [
    for purpose in ["landing", "lake", "artifacts"] :
    "arn:${local.partition}:s3:::${local.bucket_names[purpose]}"
  ]
}

module "landing_bucket" {
  source = "./modules/s3_bucket"

  bucket_name                        = local.bucket_names["landing"]
  kms_key_arn                        = module.kms.key_arn
  access_log_bucket_id               = module.access_logs_bucket.bucket_id
  noncurrent_version_expiration_days = var.landing_noncurrent_version_expiration_days
  force_destroy                      = var.force_destroy_buckets
}

# Delta Lake keeps its own table history (the _delta_log and time travel), so S3
# versions of lake objects are only a short safety net against accidental deletes:
# noncurrent versions expire after a few days instead of accumulating storage cost.
module "lake_bucket" {
  source = "./modules/s3_bucket"

  bucket_name                        = local.bucket_names["lake"]
  kms_key_arn                        = module.kms.key_arn
  access_log_bucket_id               = module.access_logs_bucket.bucket_id
  noncurrent_version_expiration_days = var.lake_noncurrent_version_expiration_days
  force_destroy                      = var.force_destroy_buckets
}

module "artifacts_bucket" {
  source = "./modules/s3_bucket"

  bucket_name                        = local.bucket_names["artifacts"]
  kms_key_arn                        = module.kms.key_arn
  access_log_bucket_id               = module.access_logs_bucket.bucket_id
  noncurrent_version_expiration_days = var.artifacts_noncurrent_version_expiration_days
  force_destroy                      = var.force_destroy_buckets
}

# ---------------------------------------------------------------- monitoring
module "monitoring" {
  source = "./modules/monitoring"

  name                  = local.name
  kms_key_arn           = module.kms.key_arn
  log_group_names       = values(local.log_groups)
  log_retention_days    = var.log_retention_days
  alert_email_addresses = var.alert_email_addresses
}

# ---------------------------------------------------------------- Spark
module "emr_serverless" {
  source = "./modules/emr_serverless"

  name                 = local.name
  release_label        = var.emr_release_label
  architecture         = var.emr_architecture
  max_cpu              = var.emr_max_cpu
  max_memory           = var.emr_max_memory
  max_disk             = var.emr_max_disk
  idle_timeout_minutes = var.emr_idle_timeout_minutes

  vpc_id     = var.vpc_id
  subnet_ids = var.private_subnet_ids

  landing_bucket_arn   = module.landing_bucket.bucket_arn
  lake_bucket_arn      = module.lake_bucket.bucket_arn
  artifacts_bucket_arn = module.artifacts_bucket.bucket_arn
  landing_prefix       = local.landing_prefix
  lake_prefix          = local.lake_prefix
  artifacts_prefix     = local.artifacts_prefix
  code_prefix          = local.code_prefix

  kms_key_arn   = module.kms.key_arn
  log_group_arn = module.monitoring.log_group_arns[local.log_groups.spark]
  sns_topic_arn = module.monitoring.sns_topic_arn
}

# ---------------------------------------------------------------- Airflow
module "mwaa" {
  source = "./modules/mwaa"

  name                  = local.name
  airflow_version       = var.mwaa_airflow_version
  environment_class     = var.mwaa_environment_class
  min_workers           = var.mwaa_min_workers
  max_workers           = var.mwaa_max_workers
  webserver_access_mode = var.mwaa_webserver_access_mode

  vpc_id     = var.vpc_id
  vpc_cidr   = data.aws_vpc.this.cidr_block
  subnet_ids = var.private_subnet_ids

  # DAGs, plugins and requirements live under airflow/ in the artifacts bucket.
  source_bucket_id     = module.artifacts_bucket.bucket_id
  source_bucket_arn    = module.artifacts_bucket.bucket_arn
  airflow_prefix       = local.airflow_prefix
  plugins_s3_path      = var.mwaa_plugins_s3_path
  requirements_s3_path = var.mwaa_requirements_s3_path

  kms_key_arn                    = module.kms.key_arn
  log_retention_days             = var.log_retention_days
  secrets_prefix                 = local.secrets_prefix
  secret_recovery_window_in_days = var.secret_recovery_window_in_days

  emr_application_id  = module.emr_serverless.application_id
  emr_application_arn = module.emr_serverless.application_arn
  emr_job_role_arn    = module.emr_serverless.job_role_arn
  sns_topic_arn       = module.monitoring.sns_topic_arn
}

# ---------------------------------------------------------------- MLflow (optional)
module "mlflow" {
  source = "./modules/mlflow"
  count  = var.enable_mlflow_server ? 1 : 0

  name          = local.name
  image         = var.mlflow_image
  task_cpu      = var.mlflow_task_cpu
  task_memory   = var.mlflow_task_memory
  desired_count = var.mlflow_desired_count

  vpc_id     = var.vpc_id
  subnet_ids = var.private_subnet_ids
  client_security_group_ids = [
    module.emr_serverless.security_group_id,
    module.mwaa.security_group_id,
  ]

  artifacts_bucket_id  = module.artifacts_bucket.bucket_id
  artifacts_bucket_arn = module.artifacts_bucket.bucket_arn
  artifact_prefix      = "${local.artifacts_prefix}/mlflow"

  kms_key_arn    = module.kms.key_arn
  log_group_name = local.log_groups.mlflow
  log_group_arn  = module.monitoring.log_group_arns[local.log_groups.mlflow]

  db_instance_class        = var.mlflow_db_instance_class
  db_multi_az              = var.mlflow_db_multi_az
  db_deletion_protection   = var.mlflow_db_deletion_protection
  db_backup_retention_days = var.mlflow_db_backup_retention_days
}
