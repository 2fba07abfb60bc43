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

  # S3 copies of EMR Serverless driver and executor logs (orchestration.emr_serverless.log_uri).
  emr_log_prefix = "logs/emr"

  log_groups = {
    spark    = "/${var.project}/${var.environment}/emr-serverless"
    pipeline = "/${var.project}/${var.environment}/pipeline"
    mlflow   = "/${var.project}/${var.environment}/mlflow"
  }

  # What `make deploy` writes for MWAA (keys in the artifacts bucket).
  mwaa_files = {
    requirements   = "${local.airflow_prefix}/requirements.txt"
    plugins        = "${local.airflow_prefix}/plugins.zip"
    startup_script = "${local.airflow_prefix}/startup.sh"
  }

  # The DAG side's lake access, declared by batchml (batchml.orchestration.lake_state.DAG_SIDE_ACCESS) and
  # copied to dag_side_access.json (tests/infra checks the copy). Each prefix starts with the root it lives
  # under: "lake/..." is below storage.lake_uri, "artifacts/..." below storage.artifacts_uri.
  dag_side_access = jsondecode(file("${path.module}/dag_side_access.json"))
  dag_side_key_prefixes = {
    lake      = local.lake_prefix
    artifacts = local.artifacts_prefix
  }
  dag_side_keys = {
    for mode in ["read", "write"] : mode => [
      for p in local.dag_side_access[mode] :
      { root = split("/", p)[0], key = join("/", [local.dag_side_key_prefixes[split("/", p)[0]], join("/", slice(split("/", p), 1, length(split("/", p))))]) }
    ]
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

# Delta Lake keeps its own table history (the _delta_log and time travel). S3 versions are the
# safety net below it: no role in this stack may delete an object version, so a file deleted or
# overwritten by mistake (a VACUUM, a bad job) is restorable for the noncurrent window (>= 14 days in
# prod), and AWS Backup (modules/backup) keeps daily recovery points beyond that.
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
  log_group_names       = local.log_groups
  log_retention_days    = var.log_retention_days
  alert_email_addresses = var.alert_email_addresses

  # Alerts: EMR Serverless job runs that fail, MWAA task failures and a silent scheduler.
  emr_application_id    = module.emr_serverless.application_id
  mwaa_environment_name = module.mwaa.environment_name
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

  log_prefix = local.emr_log_prefix

  kms_key_arn   = module.kms.key_arn
  log_group_arn = module.monitoring.log_group_arns["spark"]
  sns_topic_arn = module.monitoring.sns_topic_arn
  # MLflow basic-auth password of the pipeline user, resolved by EMR Serverless at job start
  # (spark conf value EMR.secret@<name>, see docs/deploy.md).
  readable_secret_arns = var.enable_mlflow_server ? { mlflow = module.mlflow[0].pipeline_secret_arn } : {}
}

# ---------------------------------------------------------------- online feature store
# `batchml run materialize` (a Spark job with the EMR job role) writes it; docs/online.md.
module "online_store" {
  source = "./modules/online_store"

  table_name       = "${local.name}-online-features"
  kms_key_arn      = module.kms.key_arn
  writer_role_name = module.emr_serverless.job_role_name
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

  # DAGs, plugins, requirements and the startup script live under airflow/ in the artifacts bucket;
  # `make deploy` uploads them and records their object versions in envs/<env>.release.tfvars.json.
  source_bucket_id  = module.artifacts_bucket.bucket_id
  source_bucket_arn = module.artifacts_bucket.bucket_arn
  airflow_prefix    = local.airflow_prefix
  code_prefix       = local.code_prefix
  files             = local.mwaa_files
  release           = var.mwaa_release

  # Exactly the lake and artifact prefixes the DAG-side tasks touch (dag_side_access.json).
  lake_access = {
    bucket_arns = distinct([for k in concat(local.dag_side_keys.read, local.dag_side_keys.write) : local.dag_side_bucket_arns[k.root]])
    list_prefixes = distinct(flatten([
      for k in concat(local.dag_side_keys.read, local.dag_side_keys.write) : [k.key, "${k.key}*"]
    ]))
    read_object_arns  = [for k in local.dag_side_keys.read : "${local.dag_side_bucket_arns[k.root]}/${k.key}*"]
    write_object_arns = [for k in local.dag_side_keys.write : "${local.dag_side_bucket_arns[k.root]}/${k.key}*"]
  }

  kms_key_arn                    = module.kms.key_arn
  log_retention_days             = var.log_retention_days
  secrets_prefix                 = local.secrets_prefix
  secret_recovery_window_in_days = var.secret_recovery_window_in_days

  emr_application_id  = module.emr_serverless.application_id
  emr_application_arn = module.emr_serverless.application_arn
  emr_job_role_arn    = module.emr_serverless.job_role_arn
  sns_topic_arn       = module.monitoring.sns_topic_arn
}

locals {
  dag_side_bucket_arns = {
    lake      = module.lake_bucket.bucket_arn
    artifacts = module.artifacts_bucket.bucket_arn
  }
}

# ---------------------------------------------------------------- MLflow (optional)
module "mlflow" {
  source = "./modules/mlflow"
  count  = var.enable_mlflow_server ? 1 : 0

  name          = local.name
  image_tag     = var.mlflow_image_tag
  task_cpu      = var.mlflow_task_cpu
  task_memory   = var.mlflow_task_memory
  desired_count = var.mlflow_desired_count

  domain_name     = var.mlflow_domain_name
  route53_zone_id = var.mlflow_route53_zone_id

  vpc_id     = var.vpc_id
  subnet_ids = var.private_subnet_ids
  # Static keys: the security group IDs are only known after apply (for_each needs known keys).
  client_security_group_ids = {
    spark = module.emr_serverless.security_group_id
  }
  client_cidrs = var.mlflow_allowed_cidrs

  artifacts_bucket_id  = module.artifacts_bucket.bucket_id
  artifacts_bucket_arn = module.artifacts_bucket.bucket_arn
  artifact_prefix      = "${local.artifacts_prefix}/mlflow"
  access_log_bucket_id = module.access_logs_bucket.bucket_id

  kms_key_arn                    = module.kms.key_arn
  log_group_name                 = local.log_groups.mlflow
  log_group_arn                  = module.monitoring.log_group_arns["mlflow"]
  secrets_prefix                 = local.secrets_prefix
  secret_recovery_window_in_days = var.secret_recovery_window_in_days
  sns_topic_arn                  = module.monitoring.sns_topic_arn

  db_instance_class        = var.mlflow_db_instance_class
  db_multi_az              = var.mlflow_db_multi_az
  deletion_protection      = var.mlflow_db_deletion_protection
  db_backup_retention_days = var.mlflow_db_backup_retention_days
}

# ---------------------------------------------------------------- backups
module "backup" {
  source = "./modules/backup"
  count  = var.enable_backup ? 1 : 0

  name           = local.name
  kms_key_arn    = module.kms.key_arn
  retention_days = var.backup_retention_days
  copy_vault_arn = var.backup_copy_vault_arn
  # Static keys again: the bucket ARNs are known only after apply.
  bucket_arns = {
    lake      = module.lake_bucket.bucket_arn
    artifacts = module.artifacts_bucket.bucket_arn
  }
}
