# Outputs map onto conf/prod/batchml.yaml; see the table in README.md and
# examples/conf-prod-from-outputs.sh.

output "landing_uri" {
  description = "S3 URI of landing data -> storage.landing_uri."
  value       = "s3://${module.landing_bucket.bucket_id}/${local.landing_prefix}"
}

output "lake_uri" {
  description = "S3 URI of the Delta lake -> storage.lake_uri."
  value       = "s3://${module.lake_bucket.bucket_id}/${local.lake_prefix}"
}

output "artifacts_uri" {
  description = "S3 URI of MLflow artifacts and reports -> storage.artifacts_uri."
  value       = "s3://${module.artifacts_bucket.bucket_id}/${local.artifacts_prefix}"
}

output "code_uri" {
  description = "S3 URI of code releases (read-only for jobs): `make deploy` uploads release <commit> to <code_uri>/releases/<commit> -> orchestration.emr_serverless.release_uri."
  value       = "s3://${module.artifacts_bucket.bucket_id}/${local.code_prefix}"
}

output "emr_log_uri" {
  description = "S3 URI for copies of EMR Serverless driver and executor logs -> orchestration.emr_serverless.log_uri."
  value       = "s3://${module.artifacts_bucket.bucket_id}/${local.emr_log_prefix}/"
}

output "aws_region" {
  description = "AWS region of the stack -> storage.s3.region."
  value       = var.aws_region
}

output "kms_key_arn" {
  description = "ARN of the customer-managed KMS key encrypting buckets, logs, SNS and secrets."
  value       = module.kms.key_arn
}

output "emr_serverless_application_id" {
  description = "EMR Serverless application ID for StartJobRun (also in Airflow variable batchml_emr_application_id)."
  value       = module.emr_serverless.application_id
}

output "emr_job_role_arn" {
  description = "Execution role ARN passed to EMR Serverless job runs (also in Airflow variable batchml_emr_job_role_arn)."
  value       = module.emr_serverless.job_role_arn
}

output "mwaa_environment_name" {
  description = "Name of the MWAA environment."
  value       = module.mwaa.environment_name
}

output "mwaa_webserver_url" {
  description = "Host name of the Airflow UI (reachable from the VPC when PRIVATE_ONLY)."
  value       = module.mwaa.webserver_url
}

output "mwaa_execution_role_arn" {
  description = "ARN of the MWAA execution role."
  value       = module.mwaa.execution_role_arn
}

output "dags_bucket_path" {
  description = "S3 URI to upload DAGs to (synced by MWAA)."
  value       = "s3://${module.artifacts_bucket.bucket_id}/${local.airflow_prefix}/dags"
}

output "airflow_emr_connection_id" {
  description = "Airflow connection ID (aws_conn_id) for EMR Serverless, resolved through the Secrets Manager backend."
  value       = module.mwaa.emr_connection_id
}

output "sns_topic_arn" {
  description = "ARN of the KMS-encrypted pipeline alert topic -> alerts.sns_topic_arn."
  value       = module.monitoring.sns_topic_arn
}

output "secrets_prefix" {
  description = "Secrets Manager name prefix; Airflow connections/variables live under <prefix>/airflow/{connections,variables}."
  value       = local.secrets_prefix
}

output "log_group_names" {
  description = "CloudWatch log groups (spark: EMR Serverless jobs -> orchestration.emr_serverless.log_group; pipeline; mlflow)."
  value       = local.log_groups
}

output "mwaa_source_files" {
  description = "S3 URIs `make deploy` writes MWAA's requirements.txt, plugins.zip and startup script to (their object versions go back in through var.mwaa_release)."
  value       = { for k, key in local.mwaa_files : k => "s3://${module.artifacts_bucket.bucket_id}/${key}" }
}

output "mwaa_active_release" {
  description = "requirements.txt, plugins.zip and startup script MWAA runs with (S3 key and object version; null before the first deploy). The startup script decides which release the DAG side uses."
  value       = module.mwaa.active_files
}

output "mwaa_dag_side_access" {
  description = "The lake and artifact S3 prefixes the MWAA execution role may read and write (from dag_side_access.json)."
  value       = module.mwaa.lake_access
}

output "alarm_names" {
  description = "CloudWatch alarms that notify the alert topic (MWAA task failures and scheduler heartbeat, MLflow service and database)."
  value       = concat(module.monitoring.alarm_names, var.enable_mlflow_server ? module.mlflow[0].alarm_names : [])
}

output "emr_failure_rule_name" {
  description = "EventBridge rule that sends failed EMR Serverless job runs of this application to the alert topic."
  value       = module.monitoring.emr_failure_rule_name
}

output "backup_vault_name" {
  description = "AWS Backup vault holding the lake and artifacts recovery points; null when enable_backup is false."
  value       = var.enable_backup ? module.backup[0].vault_name : null
}

output "mlflow_tracking_uri" {
  description = "MLflow tracking URI (HTTPS through the internal load balancer) -> mlflow.tracking_uri; null when enable_mlflow_server is false."
  value       = var.enable_mlflow_server ? module.mlflow[0].tracking_uri : null
}

output "mlflow_pipeline_username" {
  description = "MLflow basic-auth user of the pipeline (MLFLOW_TRACKING_USERNAME); null when enable_mlflow_server is false."
  value       = var.enable_mlflow_server ? module.mlflow[0].pipeline_username : null
}

output "mlflow_pipeline_secret_name" {
  description = "Secrets Manager name of the pipeline user's MLflow password (EMR.secret@<name> for MLFLOW_TRACKING_PASSWORD); null when enable_mlflow_server is false."
  value       = var.enable_mlflow_server ? module.mlflow[0].pipeline_secret_name : null
}

output "mlflow_ecr_repository_url" {
  description = "ECR repository to push the MLflow server image to (infra/mlflow/Dockerfile); null when enable_mlflow_server is false."
  value       = var.enable_mlflow_server ? module.mlflow[0].ecr_repository_url : null
}

output "online_table_name" {
  description = "DynamoDB table of the online feature store (online.dynamodb.table in conf/prod)."
  value       = module.online_store.table_name
}
