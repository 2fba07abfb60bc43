output "environment_name" {
  description = "Name of the MWAA environment."
  value       = aws_mwaa_environment.this.name
}

output "webserver_url" {
  description = "Host name of the Airflow UI."
  value       = aws_mwaa_environment.this.webserver_url
}

output "execution_role_arn" {
  description = "ARN of the MWAA execution role."
  value       = aws_iam_role.execution.arn
}

output "security_group_id" {
  description = "Security group of the MWAA environment (allowed into MLflow)."
  value       = aws_security_group.airflow.id
}

output "connections_prefix" {
  description = "Secrets Manager prefix of Airflow connections."
  value       = local.connections_prefix
}

output "variables_prefix" {
  description = "Secrets Manager prefix of Airflow variables."
  value       = local.variables_prefix
}

output "emr_connection_id" {
  description = "Airflow connection ID for EMR Serverless (aws_conn_id in the DAGs)."
  value       = var.emr_connection_id
}

output "lake_access" {
  description = "The lake and artifact S3 access granted to the execution role (as passed in)."
  value       = var.lake_access
}

output "environment_arn" {
  description = "ARN of the MWAA environment (the aws:SourceArn of its execution role's trust)."
  value       = aws_mwaa_environment.this.arn
}

output "environment_execution_role_arn" {
  description = "Execution role the environment runs as (as set on the environment)."
  value       = aws_mwaa_environment.this.execution_role_arn
}

output "airflow_version" {
  description = "Airflow version of the environment."
  value       = aws_mwaa_environment.this.airflow_version
}

output "active_files" {
  description = "requirements.txt, plugins.zip and startup script the environment runs with: S3 key and object version (null before the first deploy)."
  value = {
    requirements   = { key = aws_mwaa_environment.this.requirements_s3_path, version = aws_mwaa_environment.this.requirements_s3_object_version }
    plugins        = { key = aws_mwaa_environment.this.plugins_s3_path, version = aws_mwaa_environment.this.plugins_s3_object_version }
    startup_script = { key = aws_mwaa_environment.this.startup_script_s3_path, version = aws_mwaa_environment.this.startup_script_s3_object_version }
  }
}

output "log_group_retention_days" {
  description = "Retention of each MWAA log group, by component."
  value       = { for k, g in aws_cloudwatch_log_group.airflow : k => g.retention_in_days }
}

output "airflow_variable_secret_ids" {
  description = "Secrets Manager IDs of the Airflow variables this module creates, by variable name."
  value       = { for k, s in aws_secretsmanager_secret.variables : k => s.name }
}
