# The online feature store's DynamoDB table (docs/online.md) and the Spark jobs' access to it.

# One item per key: pk (dataset/event/<id>, dataset/entity/..., dataset/meta/...), the record as binary v,
# and expires_at, the TTL attribute `batchml run materialize` sets from the run date (online.ttl_days).
resource "aws_dynamodb_table" "this" {
  name                        = var.table_name
  billing_mode                = "PAY_PER_REQUEST" # nightly bursts of batch writes, then point reads: on-demand
  hash_key                    = "pk"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "pk"
    type = "S"
  }

  ttl {
    attribute_name = "expires_at"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = var.kms_key_arn
  }

  tags = var.tags
}

# The materialize stage writes (BatchWriteItem: puts and deletes), reads its markers (BatchGetItem) and the
# health check describes the table. Nothing else: no scans, no table administration. The role already
# may use the stack's KMS key, which DynamoDB uses on its behalf.
data "aws_iam_policy_document" "writer" {
  statement {
    sid       = "MaterializeOnlineFeatures"
    effect    = "Allow"
    actions   = ["dynamodb:BatchWriteItem", "dynamodb:BatchGetItem", "dynamodb:GetItem", "dynamodb:DescribeTable"]
    resources = [aws_dynamodb_table.this.arn]
  }
}

resource "aws_iam_role_policy" "writer" {
  name   = "batchml-online-store"
  role   = var.writer_role_name
  policy = data.aws_iam_policy_document.writer.json
}
