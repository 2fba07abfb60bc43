# What only examples/complete switches on (every optional module, MWAA running a deployed release),
# on top of tests/env.tftest.hcl. Run by tests/infra/test_terraform.py as
#   terraform test -filter=tests/env.tftest.hcl -filter=tests/complete.tftest.hcl \
#     -var-file=examples/complete/complete.tfvars

mock_provider "aws" {
  source = "./tests"
}

run "complete" {
  command = apply

  assert {
    condition     = output.mlflow_tracking_uri == "https://mlflow.staging.batchml.example.com"
    error_message = "tracking_uri: ${output.mlflow_tracking_uri}"
  }

  # MWAA runs the deployed files at exactly the recorded object versions.
  assert {
    condition = output.mwaa_active_release == {
      requirements   = { key = "airflow/requirements.txt", version = "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY" }
      plugins        = { key = "airflow/plugins.zip", version = "Ao4l1.NGzm0WeUX8gR0xbwl7gRmjNhDU" }
      startup_script = { key = "airflow/startup.sh", version = "v9yBd5DtvUXG.pDuZxmXp8hBcUfpC2Gz" }
    }
    error_message = "MWAA release files: ${jsonencode(output.mwaa_active_release)}"
  }

  assert {
    condition = toset(output.alarm_names) == toset([
      "batchml-staging-mwaa-task-failures", "batchml-staging-mwaa-scheduler-heartbeat",
      "batchml-staging-mlflow-unhealthy", "batchml-staging-mlflow-db-cpu", "batchml-staging-mlflow-db-storage",
    ])
    error_message = "alarms: ${jsonencode(output.alarm_names)}"
  }

  assert {
    condition     = module.backup[0].copy_vault_arns == ["arn:aws:backup:eu-central-1:123456789012:backup-vault:batchml-dr"]
    error_message = "daily recovery points are not copied to the DR vault: ${jsonencode(module.backup[0].copy_vault_arns)}"
  }

  assert {
    condition = (
      output.backup_vault_name == "batchml-staging-data" &&
      output.mlflow_pipeline_secret_name == "batchml/staging/mlflow/pipeline-password" &&
      can(regex("^arn:aws:sns:", output.sns_topic_arn))
    )
    error_message = "backup vault, MLflow secret or topic"
  }
}
