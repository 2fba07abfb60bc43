output "sns_topic_arn" {
  description = "ARN of the KMS-encrypted pipeline alert topic."
  value       = aws_sns_topic.alerts.arn
}

output "log_group_arns" {
  description = "Map of log group key (as in log_group_names) to ARN."
  value       = { for k, g in aws_cloudwatch_log_group.this : k => g.arn }
}

output "alarm_names" {
  description = "Names of the MWAA alarms that notify the alert topic."
  value       = [aws_cloudwatch_metric_alarm.mwaa_task_failures.alarm_name, aws_cloudwatch_metric_alarm.mwaa_scheduler_heartbeat.alarm_name]
}

output "emr_failure_rule_name" {
  description = "Name of the EventBridge rule for failed EMR Serverless job runs."
  value       = aws_cloudwatch_event_rule.emr_job_failed.name
}

output "log_group_retention_days" {
  description = "Retention of each log group, by key."
  value       = { for k, g in aws_cloudwatch_log_group.this : k => g.retention_in_days }
}

output "emr_failure_rule" {
  description = "The EMR job-failed rule as planned: its event pattern (decoded) and target ARN."
  value = {
    pattern    = jsondecode(aws_cloudwatch_event_rule.emr_job_failed.event_pattern)
    target_arn = aws_cloudwatch_event_target.emr_job_failed.arn
  }
}

output "alarm_actions" {
  description = "Alarm actions of each MWAA alarm, by alarm name."
  value = {
    for a in [aws_cloudwatch_metric_alarm.mwaa_task_failures, aws_cloudwatch_metric_alarm.mwaa_scheduler_heartbeat] :
    a.alarm_name => { actions = a.alarm_actions, missing = a.treat_missing_data, dimensions = a.dimensions }
  }
}
