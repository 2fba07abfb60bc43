# Amazon MWAA (managed Airflow) with its execution role, network, log groups and
# the Secrets Manager backend that holds the Airflow connection for EMR Serverless.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account_id  = data.aws_caller_identity.current.account_id
  partition   = data.aws_partition.current.partition
  region      = data.aws_region.current.name
  env_name    = "${var.name}-airflow"
  env_arn     = "arn:${local.partition}:airflow:${local.region}:${local.account_id}:environment/${local.env_name}"
  secrets_arn = "arn:${local.partition}:secretsmanager:${local.region}:${local.account_id}:secret:${var.secrets_prefix}/airflow/*"

  connections_prefix = "${var.secrets_prefix}/airflow/connections"
  variables_prefix   = "${var.secrets_prefix}/airflow/variables"

  # MWAA writes to log groups named airflow-<environment>-<Component>. Creating them
  # here first gives them KMS encryption and a retention (MWAA would keep logs forever).
  log_components = ["DAGProcessing", "Scheduler", "Task", "WebServer", "Worker"]
}

resource "aws_cloudwatch_log_group" "airflow" {
  for_each = toset(local.log_components)

  name              = "airflow-${local.env_name}-${each.value}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

# Folder marker so the DAG path exists when the environment is created.
resource "aws_s3_object" "dags_folder" {
  bucket     = var.source_bucket_id
  key        = "${var.airflow_prefix}/dags/"
  content    = ""
  kms_key_id = var.kms_key_arn
}

# ---------------------------------------------------------------- network
resource "aws_security_group" "airflow" {
  name        = local.env_name
  description = "MWAA workers, scheduler and web server; self-referencing as MWAA requires"
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "self" {
  security_group_id            = aws_security_group.airflow.id
  description                  = "MWAA components talk to each other"
  ip_protocol                  = "-1"
  referenced_security_group_id = aws_security_group.airflow.id
}

resource "aws_vpc_security_group_egress_rule" "self" {
  security_group_id            = aws_security_group.airflow.id
  description                  = "MWAA components talk to each other"
  ip_protocol                  = "-1"
  referenced_security_group_id = aws_security_group.airflow.id
}

resource "aws_vpc_security_group_egress_rule" "https" {
  security_group_id = aws_security_group.airflow.id
  description       = "HTTPS to AWS APIs (S3, SQS, CloudWatch, Secrets Manager, EMR Serverless)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "postgres" {
  security_group_id = aws_security_group.airflow.id
  description       = "MWAA metadata database endpoint (service-managed, inside the VPC)"
  ip_protocol       = "tcp"
  from_port         = 5432
  to_port           = 5432
  cidr_ipv4         = var.vpc_cidr
}

# ---------------------------------------------------------------- IAM
data "aws_iam_policy_document" "assume" {
  statement {
    sid     = "MwaaAssumesExecutionRole"
    effect  = "Allow"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["airflow.amazonaws.com", "airflow-env.amazonaws.com"]
    }

    # Confused-deputy guard: only this account's environment of this name may assume the role.
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = [local.env_arn]
    }
  }
}

resource "aws_iam_role" "execution" {
  name               = "${local.env_name}-execution"
  description        = "MWAA execution role for batchml: read DAGs, run EMR Serverless jobs, read Airflow secrets"
  assume_role_policy = data.aws_iam_policy_document.assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "execution" {
  statement {
    sid       = "PublishAirflowMetrics"
    effect    = "Allow"
    actions   = ["airflow:PublishMetrics"]
    resources = [local.env_arn]
  }

  # s3:GetAccountPublicAccessBlock has no resource-level permissions; MWAA calls it
  # to verify the source bucket is not public.
  statement {
    sid       = "CheckAccountPublicAccessBlock"
    effect    = "Allow"
    actions   = ["s3:GetAccountPublicAccessBlock"]
    resources = ["*"]
  }

  statement {
    sid    = "ReadAirflowBucketMetadata"
    effect = "Allow"
    actions = [
      "s3:ListBucket",
      "s3:GetBucketLocation",
      "s3:GetBucketVersioning",
      "s3:GetBucketPublicAccessBlock",
      "s3:GetEncryptionConfiguration",
    ]
    resources = [var.source_bucket_arn]
  }

  statement {
    sid       = "ReadDagsPluginsRequirements"
    effect    = "Allow"
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = ["${var.source_bucket_arn}/${var.airflow_prefix}/*"]
  }

  # The DAG side loads its config from the active release (BATCHML_CONF_DIR=<release>/conf, set by the
  # startup script): read-only, conf/ of any release (a rollback points back at an older one).
  statement {
    sid       = "ListReleaseConf"
    effect    = "Allow"
    actions   = ["s3:ListBucket"]
    resources = [var.source_bucket_arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.code_prefix}/releases/*/conf", "${var.code_prefix}/releases/*/conf/*"]
    }
  }

  statement {
    sid       = "ReadReleaseConf"
    effect    = "Allow"
    actions   = ["s3:GetObject"]
    resources = ["${var.source_bucket_arn}/${var.code_prefix}/releases/*/conf/*"]
  }

  # The DAG-side tasks (blocked gate, scoring fallback, overrides, retraining requests) read and append
  # to a few Delta tables with delta-rs: exactly the prefixes in dag_side_access.json, nothing else of
  # the lake or the artifacts. Delta commits are conditional puts, so no delete is needed.
  statement {
    sid       = "ListDagSidePrefixes"
    effect    = "Allow"
    actions   = ["s3:ListBucket"]
    resources = var.lake_access.bucket_arns

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = var.lake_access.list_prefixes
    }
  }

  statement {
    sid       = "ReadDagSidePrefixes"
    effect    = "Allow"
    actions   = ["s3:GetObject"]
    resources = var.lake_access.read_object_arns
  }

  statement {
    sid       = "WriteDagSidePrefixes"
    effect    = "Allow"
    actions   = ["s3:PutObject", "s3:AbortMultipartUpload"]
    resources = var.lake_access.write_object_arns
  }

  statement {
    sid    = "WriteAirflowLogs"
    effect = "Allow"
    actions = [
      "logs:CreateLogStream",
      "logs:CreateLogGroup",
      "logs:PutLogEvents",
      "logs:GetLogEvents",
      "logs:GetLogRecord",
      "logs:GetLogGroupFields",
      "logs:GetQueryResults",
    ]
    resources = ["arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:airflow-${local.env_name}-*"]
  }

  statement {
    sid       = "DescribeLogGroupsInAccount"
    effect    = "Allow"
    actions   = ["logs:DescribeLogGroups"]
    resources = ["arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:*"]
  }

  # cloudwatch:PutMetricData has no resource-level permissions; limit it by namespace.
  statement {
    sid       = "PutAirflowMetrics"
    effect    = "Allow"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"]

    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = ["AmazonMWAA", "batchml"]
    }
  }

  # The Celery queue lives in an AWS-owned account, hence the account wildcard.
  statement {
    sid    = "UseCeleryQueue"
    effect = "Allow"
    actions = [
      "sqs:ChangeMessageVisibility",
      "sqs:DeleteMessage",
      "sqs:GetQueueAttributes",
      "sqs:GetQueueUrl",
      "sqs:ReceiveMessage",
      "sqs:SendMessage",
    ]
    resources = ["arn:${local.partition}:sqs:${local.region}:*:airflow-celery-*"]
  }

  statement {
    sid    = "UsePipelineKeyThroughServices"
    effect = "Allow"
    actions = [
      "kms:Decrypt",
      "kms:DescribeKey",
      "kms:Encrypt",
      "kms:GenerateDataKey",
      "kms:GenerateDataKeyWithoutPlaintext",
    ]
    resources = [var.kms_key_arn]

    condition {
      test     = "StringLike"
      variable = "kms:ViaService"
      values = [
        "sqs.${local.region}.amazonaws.com",
        "s3.${local.region}.amazonaws.com",
        "secretsmanager.${local.region}.amazonaws.com",
        "sns.${local.region}.amazonaws.com",
        "logs.${local.region}.amazonaws.com",
      ]
    }
  }

  statement {
    sid       = "ReadAirflowConnectionsAndVariables"
    effect    = "Allow"
    actions   = ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
    resources = [local.secrets_arn]
  }

  statement {
    sid    = "RunSparkJobsOnEmrServerless"
    effect = "Allow"
    actions = [
      "emr-serverless:GetApplication",
      "emr-serverless:StartApplication",
      "emr-serverless:StartJobRun",
      "emr-serverless:GetJobRun",
      "emr-serverless:CancelJobRun",
    ]
    resources = [var.emr_application_arn, "${var.emr_application_arn}/jobruns/*"]
  }

  statement {
    sid       = "PassOnlyTheSparkJobRole"
    effect    = "Allow"
    actions   = ["iam:PassRole"]
    resources = [var.emr_job_role_arn]

    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["emr-serverless.amazonaws.com"]
    }
  }

  statement {
    sid       = "PublishPipelineAlerts"
    effect    = "Allow"
    actions   = ["sns:Publish"]
    resources = [var.sns_topic_arn]
  }
}

resource "aws_iam_role_policy" "execution" {
  name   = "batchml-mwaa-execution"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

# ---------------------------------------------------------------- secrets backend
# Airflow reads connections/variables from Secrets Manager under these prefixes.
# The EMR Serverless connection carries no credential: the operator runs as the MWAA
# execution role. Values below are identifiers, not secrets.
resource "aws_secretsmanager_secret" "emr_connection" {
  #checkov:skip=CKV2_AWS_57:Holds no credential (connection type + region only; auth is the MWAA execution role), so there is nothing to rotate.
  name                    = "${local.connections_prefix}/${var.emr_connection_id}"
  description             = "Airflow connection for EMR Serverless (no credential: uses the MWAA execution role)"
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = var.secret_recovery_window_in_days
  tags                    = var.tags
}

resource "aws_secretsmanager_secret_version" "emr_connection" {
  secret_id = aws_secretsmanager_secret.emr_connection.id
  secret_string = jsonencode({
    conn_type = "aws"
    extra = {
      region_name = local.region
    }
  })
}

resource "aws_secretsmanager_secret" "variables" {
  #checkov:skip=CKV2_AWS_57:Holds non-secret identifiers (application ID, role ARN) for DAGs; there is nothing to rotate.
  for_each = {
    batchml_emr_application_id = var.emr_application_id
    batchml_emr_job_role_arn   = var.emr_job_role_arn
  }

  name                    = "${local.variables_prefix}/${each.key}"
  description             = "Airflow variable ${each.key} (non-secret identifier)"
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = var.secret_recovery_window_in_days
  tags                    = var.tags
}

resource "aws_secretsmanager_secret_version" "variables" {
  for_each = {
    batchml_emr_application_id = var.emr_application_id
    batchml_emr_job_role_arn   = var.emr_job_role_arn
  }

  secret_id     = aws_secretsmanager_secret.variables[each.key].id
  secret_string = each.value
}

# ---------------------------------------------------------------- environment
resource "aws_mwaa_environment" "this" {
  name               = local.env_name
  airflow_version    = var.airflow_version
  environment_class  = var.environment_class
  min_workers        = var.min_workers
  max_workers        = var.max_workers
  execution_role_arn = aws_iam_role.execution.arn
  kms_key            = var.kms_key_arn

  source_bucket_arn = var.source_bucket_arn
  dag_s3_path       = "${var.airflow_prefix}/dags"
  # requirements.txt (batchml[airflow] from the wheel in plugins.zip) and the startup script (which sets
  # BATCHML_CONF_DIR to the release) must exist before they are referenced: `make deploy` uploads them and
  # records their object versions; until then (release = null) MWAA starts without them.
  requirements_s3_path             = var.release == null ? null : var.files.requirements
  requirements_s3_object_version   = var.release == null ? null : var.release.requirements_s3_object_version
  plugins_s3_path                  = var.release == null ? null : var.files.plugins
  plugins_s3_object_version        = var.release == null ? null : var.release.plugins_s3_object_version
  startup_script_s3_path           = var.release == null ? null : var.files.startup_script
  startup_script_s3_object_version = var.release == null ? null : var.release.startup_script_s3_object_version

  webserver_access_mode = var.webserver_access_mode

  network_configuration {
    security_group_ids = [aws_security_group.airflow.id]
    subnet_ids         = slice(var.subnet_ids, 0, 2)
  }

  airflow_configuration_options = {
    "secrets.backend" = "airflow.providers.amazon.aws.secrets.secrets_manager.SecretsManagerBackend"
    "secrets.backend_kwargs" = jsonencode({
      connections_prefix = local.connections_prefix
      variables_prefix   = local.variables_prefix
    })
  }

  logging_configuration {
    dag_processing_logs {
      enabled   = true
      log_level = "WARNING"
    }
    scheduler_logs {
      enabled   = true
      log_level = "WARNING"
    }
    task_logs {
      enabled   = true
      log_level = "INFO"
    }
    webserver_logs {
      enabled   = true
      log_level = "WARNING"
    }
    worker_logs {
      enabled   = true
      log_level = "WARNING"
    }
  }

  tags = var.tags

  depends_on = [
    aws_cloudwatch_log_group.airflow,
    aws_iam_role_policy.execution,
    aws_s3_object.dags_folder,
  ]
}
