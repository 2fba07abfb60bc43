data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name
}

# Key policy. In a KMS key policy "Resource": "*" means "this key" (a key policy
# cannot name any other resource), so the wildcard-resource IAM checks do not apply.
data "aws_iam_policy_document" "key_policy" {
  #checkov:skip=CKV_AWS_109:KMS key policy: Resource "*" is the key itself; IAM permissions stay delegated to the account.
  #checkov:skip=CKV_AWS_111:KMS key policy: Resource "*" is the key itself; write access is limited to the account root and scoped service principals.
  #checkov:skip=CKV_AWS_356:KMS key policy: Resource "*" is the key itself, not every resource in the account.

  # Standard AWS default: the account (through IAM policies) administers the key.
  # Without it the key can become unmanageable. Principals still need an IAM
  # policy naming this key ARN, which is how every role in this stack is scoped.
  statement {
    sid       = "EnableIAMPoliciesForAccount"
    effect    = "Allow"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  # CloudWatch Logs encrypts the stack's log groups with this key.
  statement {
    sid    = "AllowCloudWatchLogsInThisAccount"
    effect = "Allow"
    actions = [
      "kms:Encrypt",
      "kms:Decrypt",
      "kms:ReEncryptFrom",
      "kms:ReEncryptTo",
      "kms:GenerateDataKey",
      "kms:GenerateDataKeyWithoutPlaintext",
      "kms:DescribeKey",
    ]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }

    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:*"]
    }
  }

  # CloudWatch alarms and EventBridge rules publish to the KMS-encrypted SNS alert topic.
  statement {
    sid       = "AllowAlarmPublishersToEncryptedTopic"
    effect    = "Allow"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com", "events.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_kms_key" "this" {
  description             = "batchml ${var.name}: S3 buckets, logs, SNS, Secrets Manager, MWAA, EMR Serverless, RDS"
  enable_key_rotation     = true
  rotation_period_in_days = 365
  deletion_window_in_days = var.deletion_window_in_days
  policy                  = data.aws_iam_policy_document.key_policy.json
  tags                    = var.tags
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.this.key_id
}
