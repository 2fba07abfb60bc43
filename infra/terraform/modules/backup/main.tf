# AWS Backup for the buckets whose contents cannot be rebuilt: the lake (its ops.* tables: validation
# results, overrides, the model audit trail, scoring runs, manifests) and the artifacts bucket (models,
# reports, releases). AWS Backup selects whole buckets; it cannot select a prefix.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  partition = data.aws_partition.current.partition
  # Continuous backups (point-in-time restore) keep at most 35 days.
  continuous_days = min(var.retention_days, 35)
}

resource "aws_backup_vault" "this" {
  name        = "${var.name}-data"
  kms_key_arn = var.kms_key_arn
  tags        = var.tags
}

resource "aws_backup_plan" "this" {
  name = "${var.name}-data"

  # Point-in-time restore of S3 objects within the last `continuous_days`.
  rule {
    rule_name                = "continuous"
    target_vault_name        = aws_backup_vault.this.name
    schedule                 = "cron(0 5 ? * * *)"
    enable_continuous_backup = true

    lifecycle {
      delete_after = local.continuous_days
    }
  }

  # Daily snapshots, kept longer and optionally copied to another region.
  rule {
    rule_name         = "daily"
    target_vault_name = aws_backup_vault.this.name
    schedule          = "cron(0 3 ? * * *)"
    start_window      = 60
    completion_window = 720

    lifecycle {
      delete_after = var.retention_days
    }

    dynamic "copy_action" {
      for_each = var.copy_vault_arn == null ? [] : [var.copy_vault_arn]
      content {
        destination_vault_arn = copy_action.value
        lifecycle {
          delete_after = var.retention_days
        }
      }
    }
  }

  tags = var.tags
}

data "aws_iam_policy_document" "assume" {
  statement {
    sid     = "BackupAssumesRole"
    effect  = "Allow"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["backup.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_iam_role" "backup" {
  name               = "${var.name}-backup"
  description        = "AWS Backup: back up and restore the batchml lake and artifacts buckets"
  assume_role_policy = data.aws_iam_policy_document.assume.json
  tags               = var.tags
}

# The AWS-managed S3 backup/restore policies: S3 and EventBridge actions AWS Backup needs for S3, and
# KMS only through S3 (kms:ViaService).
resource "aws_iam_role_policy_attachment" "backup" {
  for_each = toset(["AWSBackupServiceRolePolicyForS3Backup", "AWSBackupServiceRolePolicyForS3Restore"])

  role       = aws_iam_role.backup.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/${each.value}"
}

resource "aws_backup_selection" "buckets" {
  name         = "${var.name}-buckets"
  plan_id      = aws_backup_plan.this.id
  iam_role_arn = aws_iam_role.backup.arn
  resources    = values(var.bucket_arns)
}
