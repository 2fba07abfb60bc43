# Log groups, the alert topic, and what notifies it: failed EMR Serverless job runs (EventBridge),
# MWAA task failures and a silent scheduler (CloudWatch alarms). Nothing here holds a secret value.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

resource "aws_cloudwatch_log_group" "this" {
  for_each = var.log_group_names

  name              = each.value
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

resource "aws_sns_topic" "alerts" {
  name              = "${var.name}-pipeline-alerts"
  kms_master_key_id = var.kms_key_arn
  tags              = var.tags
}

data "aws_iam_policy_document" "alerts_topic" {
  statement {
    sid       = "AllowAccountPrincipalsToPublish"
    effect    = "Allow"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alerts.arn]

    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }

  statement {
    sid       = "AllowCloudWatchAlarmsAndEventBridge"
    effect    = "Allow"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alerts.arn]

    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com", "events.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alerts.arn]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_sns_topic_policy" "alerts" {
  arn    = aws_sns_topic.alerts.arn
  policy = data.aws_iam_policy_document.alerts_topic.json
}

# E-mail addresses are not secrets; each subscription must be confirmed by its recipient.
resource "aws_sns_topic_subscription" "email" {
  for_each = toset(var.alert_email_addresses)

  topic_arn = aws_sns_topic.alerts.arn
  protocol  = "email"
  endpoint  = each.value
}

# ---------------------------------------------------------------- EMR Serverless: failed job runs
resource "aws_cloudwatch_event_rule" "emr_job_failed" {
  name        = "${var.name}-emr-job-failed"
  description = "EMR Serverless job runs of the batchml application that end FAILED"
  event_pattern = jsonencode({
    source        = ["aws.emr-serverless"]
    "detail-type" = ["EMR Serverless Job Run State Change"]
    detail = {
      state         = ["FAILED"]
      applicationId = [var.emr_application_id]
    }
  })
  tags = var.tags
}

resource "aws_cloudwatch_event_target" "emr_job_failed" {
  rule      = aws_cloudwatch_event_rule.emr_job_failed.name
  target_id = "alerts"
  arn       = aws_sns_topic.alerts.arn

  input_transformer {
    input_paths = {
      job   = "$.detail.jobRunName"
      id    = "$.detail.jobRunId"
      app   = "$.detail.applicationId"
      state = "$.detail.state"
    }
    # The same JSON shape as batchml's own alerts (kind, message); the reason is in get-job-run's stateDetails.
    input_template = <<-EOT
      {"kind": "emr_job_failed", "message": "EMR Serverless job <job> (<id>) on application <app> ended <state>; details: aws emr-serverless get-job-run --application-id <app> --job-run-id <id>", "job_run_id": "<id>", "application_id": "<app>"}
    EOT
  }
}

# ---------------------------------------------------------------- MWAA: task failures, scheduler heartbeat
# MWAA publishes Airflow's StatsD metrics to the AmazonMWAA namespace with the environment as a dimension.
resource "aws_cloudwatch_metric_alarm" "mwaa_task_failures" {
  alarm_name          = "${var.name}-mwaa-task-failures"
  alarm_description   = "An Airflow task of the batchml DAGs failed (ti_failures); see the Task log group of the MWAA environment."
  namespace           = "AmazonMWAA"
  metric_name         = "TaskInstanceFailures"
  dimensions          = { Environment = var.mwaa_environment_name, Function = "Scheduler" }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alerts.arn]
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "mwaa_scheduler_heartbeat" {
  alarm_name          = "${var.name}-mwaa-scheduler-heartbeat"
  alarm_description   = "The MWAA scheduler sent no heartbeat for 15 minutes: no DAG runs are being scheduled."
  namespace           = "AmazonMWAA"
  metric_name         = "SchedulerHeartbeat"
  dimensions          = { Environment = var.mwaa_environment_name, Function = "Scheduler" }
  statistic           = "SampleCount"
  period              = 300
  evaluation_periods  = 3
  comparison_operator = "LessThanThreshold"
  threshold           = 1
  # No data at all is the failure this alarm exists for.
  treat_missing_data = "breaching"
  alarm_actions      = [aws_sns_topic.alerts.arn]
  ok_actions         = [aws_sns_topic.alerts.arn]
  tags               = var.tags
}
