output "vault_name" {
  description = "Name of the backup vault."
  value       = aws_backup_vault.this.name
}

output "plan_id" {
  description = "ID of the backup plan."
  value       = aws_backup_plan.this.id
}

output "role_arn" {
  description = "ARN of the role AWS Backup uses for the buckets."
  value       = aws_iam_role.backup.arn
}

output "selected_resources" {
  description = "Bucket ARNs the backup plan covers."
  value       = aws_backup_selection.buckets.resources
}

output "copy_vault_arns" {
  description = "Vaults the daily recovery points are copied to (empty when none)."
  value       = flatten([for r in aws_backup_plan.this.rule : [for c in r.copy_action : c.destination_vault_arn]])
}
