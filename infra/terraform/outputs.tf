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
  description = "S3 URI where the deployment uploads Spark entry points and Python archives (read-only for jobs)."
  value       = "s3://${module.artifacts_bucket.bucket_id}/${local.code_prefix}"
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
  description = "CloudWatch log groups (Spark jobs, pipeline application logs, MLflow)."
  value       = local.log_groups
}

output "mlflow_tracking_uri" {
  description = "MLflow tracking URI (inside the VPC) -> mlflow.tracking_uri; null when enable_mlflow_server is false."
  value       = var.enable_mlflow_server ? module.mlflow[0].tracking_uri : null
}
