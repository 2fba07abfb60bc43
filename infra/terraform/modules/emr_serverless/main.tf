# EMR Serverless Spark application and the job execution role.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name
}

resource "aws_security_group" "spark" {
  #checkov:skip=CKV2_AWS_5:Attached through aws_emrserverless_application.network_configuration, which checkov does not model as an attachment.
  name        = "${var.name}-emr-serverless"
  description = "EMR Serverless Spark workers: egress only (HTTPS to AWS APIs and the MLflow load balancer)"
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_egress_rule" "https" {
  security_group_id = aws_security_group.spark.id
  description       = "HTTPS to S3, CloudWatch, KMS, other AWS APIs (VPC endpoints or NAT) and MLflow"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_emrserverless_application" "spark" {
  name          = "${var.name}-spark"
  release_label = var.release_label
  type          = "spark"
  architecture  = var.architecture

  maximum_capacity {
    cpu    = var.max_cpu
    memory = var.max_memory
    disk   = var.max_disk
  }

  auto_start_configuration {
    enabled = true
  }

  # Stop idle workers quickly: EMR Serverless bills per vCPU/GB-second while running.
  auto_stop_configuration {
    enabled              = true
    idle_timeout_minutes = var.idle_timeout_minutes
  }

  network_configuration {
    subnet_ids         = var.subnet_ids
    security_group_ids = [aws_security_group.spark.id]
  }

  tags = var.tags
}

data "aws_iam_policy_document" "assume" {
  statement {
    sid     = "EmrServerlessAssumesJobRole"
    effect  = "Allow"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["emr-serverless.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }

    # Only this application's job runs may assume the role (not any application in the account).
    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = [aws_emrserverless_application.spark.arn]
    }
  }
}

resource "aws_iam_role" "job" {
  name                 = "${var.name}-emr-job"
  description          = "batchml Spark jobs on EMR Serverless: read landing, read/write lake and artifact prefixes"
  assume_role_policy   = data.aws_iam_policy_document.assume.json
  max_session_duration = 43200
  tags                 = var.tags
}

# Least privilege: object access is limited to the prefixes the pipeline uses.
data "aws_iam_policy_document" "job" {
  statement {
    sid       = "ListPipelinePrefixes"
    effect    = "Allow"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = [var.landing_bucket_arn, var.lake_bucket_arn, var.artifacts_bucket_arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values = [
        "${var.landing_prefix}/*", var.landing_prefix,
        "${var.lake_prefix}/*", var.lake_prefix,
        "${var.artifacts_prefix}/*", var.artifacts_prefix,
        "${var.code_prefix}/*", var.code_prefix,
      ]
    }
  }

  statement {
    sid       = "ReadLanding"
    effect    = "Allow"
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = ["${var.landing_bucket_arn}/${var.landing_prefix}/*"]
  }

  statement {
    sid       = "ReadJobCode"
    effect    = "Allow"
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = ["${var.artifacts_bucket_arn}/${var.code_prefix}/*"]
  }

  # Delta Lake writes, rewrites (OPTIMIZE) and deletes (VACUUM, expired log cleanup) data and log
  # files. Deletes leave noncurrent versions: s3:DeleteObjectVersion is granted to no role in this
  # stack, so anything deleted here stays restorable for the bucket's noncurrent window.
  statement {
    sid = "ReadWriteLakeAndArtifacts"
    actions = [
      "s3:GetObject",
      "s3:GetObjectVersion",
      "s3:PutObject",
      "s3:DeleteObject",
      "s3:AbortMultipartUpload",
      "s3:ListMultipartUploadParts",
    ]
    effect = "Allow"
    resources = [
      "${var.lake_bucket_arn}/${var.lake_prefix}/*",
      "${var.artifacts_bucket_arn}/${var.artifacts_prefix}/*",
    ]
  }

  # EMR Serverless writes driver and executor logs here as the job role (monitoringConfiguration).
  statement {
    sid       = "WriteJobLogCopies"
    effect    = "Allow"
    actions   = ["s3:PutObject"]
    resources = ["${var.artifacts_bucket_arn}/${var.log_prefix}/*"]
  }

  statement {
    sid    = "UseOnlyThePipelineKey"
    effect = "Allow"
    actions = [
      "kms:Decrypt",
      "kms:Encrypt",
      "kms:GenerateDataKey",
      "kms:DescribeKey",
    ]
    resources = [var.kms_key_arn]
  }

  statement {
    sid       = "WriteSparkLogs"
    effect    = "Allow"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
    resources = [var.log_group_arn, "${var.log_group_arn}:*"]
  }

  statement {
    sid       = "DescribeLogGroupsInAccount"
    effect    = "Allow"
    actions   = ["logs:DescribeLogGroups"]
    resources = ["arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:*"]
  }

  statement {
    sid       = "PublishPipelineAlerts"
    effect    = "Allow"
    actions   = ["sns:Publish"]
    resources = [var.sns_topic_arn]
  }
}

resource "aws_iam_role_policy" "job" {
  name   = "batchml-spark-job"
  role   = aws_iam_role.job.id
  policy = data.aws_iam_policy_document.job.json
}

# EMR Serverless resolves EMR.secret@<name> configuration values with the job role when a job starts
# (the MLflow pipeline user's password). Only the named secrets; they are encrypted with the CMK above.
data "aws_iam_policy_document" "secrets" {
  for_each = var.readable_secret_arns

  statement {
    sid       = "ReadSecret"
    effect    = "Allow"
    actions   = ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
    resources = [each.value]
  }
}

resource "aws_iam_role_policy" "secrets" {
  for_each = var.readable_secret_arns

  name   = "batchml-spark-job-secret-${each.key}"
  role   = aws_iam_role.job.id
  policy = data.aws_iam_policy_document.secrets[each.key].json
}
