output "table_name" {
  description = "Name of the online store's DynamoDB table (online.dynamodb.table)."
  value       = aws_dynamodb_table.this.name
}

output "table_arn" {
  description = "ARN of the online store's DynamoDB table."
  value       = aws_dynamodb_table.this.arn
}

output "settings" {
  description = "What the table promises: billing mode, point-in-time recovery, TTL attribute, encryption key."
  value = {
    billing_mode           = aws_dynamodb_table.this.billing_mode
    point_in_time_recovery = aws_dynamodb_table.this.point_in_time_recovery[0].enabled
    ttl_attribute          = one([for t in aws_dynamodb_table.this.ttl : t.attribute_name if t.enabled])
    kms_key_arn            = aws_dynamodb_table.this.server_side_encryption[0].kms_key_arn
  }
}
