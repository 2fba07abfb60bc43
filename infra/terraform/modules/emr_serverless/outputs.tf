output "application_id" {
  description = "ID of the EMR Serverless application."
  value       = aws_emrserverless_application.spark.id
}

output "application_arn" {
  description = "ARN of the EMR Serverless application."
  value       = aws_emrserverless_application.spark.arn
}

output "job_role_arn" {
  description = "ARN of the job execution role passed to StartJobRun."
  value       = aws_iam_role.job.arn
}

output "job_role_name" {
  description = "Name of the job execution role (other modules attach their policies to it)."
  value       = aws_iam_role.job.name
}

output "security_group_id" {
  description = "Security group of the Spark workers (allowed into MLflow)."
  value       = aws_security_group.spark.id
}

output "release_label" {
  description = "EMR release of the application."
  value       = aws_emrserverless_application.spark.release_label
}
