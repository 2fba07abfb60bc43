output "sns_topic_arn" {
  description = "ARN of the KMS-encrypted pipeline alert topic."
  value       = aws_sns_topic.alerts.arn
}

output "log_group_arns" {
  description = "Map of log group name to ARN."
  value       = { for k, g in aws_cloudwatch_log_group.this : k => g.arn }
}
