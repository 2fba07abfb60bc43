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
