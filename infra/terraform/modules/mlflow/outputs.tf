output "tracking_uri" {
  description = "MLflow tracking URI, reachable from inside the VPC."
  value       = "http://${local.dns_name}:${local.port}"
}

output "db_endpoint" {
  description = "Endpoint of the MLflow PostgreSQL backend store."
  value       = aws_db_instance.this.endpoint
}

output "db_master_user_secret_arn" {
  description = "ARN of the RDS-managed secret holding the database password (value never in code)."
  value       = aws_db_instance.this.master_user_secret[0].secret_arn
}

output "security_group_id" {
  description = "Security group of the MLflow tasks."
  value       = aws_security_group.mlflow.id
}
