# Plans and applies (against the mocked provider: nothing is created) the root module with one
# environment's tfvars. tests/infra/test_terraform.py runs this file once per envs/*.tfvars:
#   terraform test -filter=tests/env.tftest.hcl -var-file=envs/<env>.tfvars
# A plan that cannot be made (an unknown value in for_each, a failing precondition or validation) fails
# here exactly as it would in `terraform plan`.

mock_provider "aws" {
  source = "./tests"
}

override_resource {
  target = module.landing_bucket.aws_s3_bucket.this
  values = { id = "landing-bucket", arn = "arn:aws:s3:::landing-bucket" }
}

override_resource {
  target = module.lake_bucket.aws_s3_bucket.this
  values = { id = "lake-bucket", arn = "arn:aws:s3:::lake-bucket" }
}

override_resource {
  target = module.artifacts_bucket.aws_s3_bucket.this
  values = { id = "artifacts-bucket", arn = "arn:aws:s3:::artifacts-bucket" }
}

override_resource {
  target = module.emr_serverless.aws_iam_role.job
  values = { arn = "arn:aws:iam::123456789012:role/emr-job" }
}

override_resource {
  target = module.mwaa.aws_iam_role.execution
  values = { arn = "arn:aws:iam::123456789012:role/mwaa-execution" }
}

override_resource {
  target = module.emr_serverless.aws_security_group.spark
  values = { id = "sg-0spark00000000000" }
}

run "env" {
  command = apply

  # ------------------------------------------------------------ outputs: present and of the right form
  assert {
    condition = (
      output.landing_uri == "s3://landing-bucket/landing" &&
      output.lake_uri == "s3://lake-bucket/lake" &&
      output.artifacts_uri == "s3://artifacts-bucket/artifacts" &&
      output.code_uri == "s3://artifacts-bucket/code" &&
      output.emr_log_uri == "s3://artifacts-bucket/logs/emr/" &&
      output.dags_bucket_path == "s3://artifacts-bucket/airflow/dags"
    )
    error_message = "storage outputs: ${output.landing_uri} ${output.lake_uri} ${output.artifacts_uri} ${output.code_uri} ${output.emr_log_uri} ${output.dags_bucket_path}"
  }

  assert {
    condition = output.mwaa_source_files == {
      requirements   = "s3://artifacts-bucket/airflow/requirements.txt"
      plugins        = "s3://artifacts-bucket/airflow/plugins.zip"
      startup_script = "s3://artifacts-bucket/airflow/startup.sh"
    }
    error_message = "mwaa_source_files: ${jsonencode(output.mwaa_source_files)}"
  }

  assert {
    condition = (
      output.aws_region == var.aws_region &&
      can(regex("^arn:aws:kms:[a-z0-9-]+:[0-9]{12}:key/", output.kms_key_arn)) &&
      can(regex("^arn:aws:sns:[a-z0-9-]+:[0-9]{12}:", output.sns_topic_arn)) &&
      output.emr_serverless_application_id != "" &&
      output.mwaa_environment_name == "batchml-${var.environment}-airflow" &&
      output.mwaa_webserver_url != "" &&
      output.secrets_prefix == "batchml/${var.environment}" &&
      output.airflow_emr_connection_id == "batchml_emr_serverless" &&
      output.emr_failure_rule_name == "batchml-${var.environment}-emr-job-failed"
    )
    error_message = "identity outputs are empty or malformed"
  }

  # The online feature store: on-demand, point-in-time recovery, the stack's key, TTL on expires_at (what the
  # EMR job role may do on it is checked statically: tests/infra/test_terraform.py).
  assert {
    condition = (
      output.online_table_name == "batchml-${var.environment}-online-features" &&
      module.online_store.settings.billing_mode == "PAY_PER_REQUEST" &&
      module.online_store.settings.point_in_time_recovery &&
      module.online_store.settings.ttl_attribute == "expires_at" &&
      module.online_store.settings.kms_key_arn == output.kms_key_arn
    )
    error_message = "online store table: ${jsonencode(module.online_store.settings)}"
  }

  assert {
    condition     = output.log_group_names.spark == "/batchml/${var.environment}/emr-serverless"
    error_message = "log_group_names.spark: ${output.log_group_names.spark}"
  }

  assert {
    condition = (var.enable_mlflow_server ?
      can(regex("^https://", output.mlflow_tracking_uri)) && output.mlflow_pipeline_username == "batchml-pipeline" && output.mlflow_pipeline_secret_name == "batchml/${var.environment}/mlflow/pipeline-password" :
      output.mlflow_tracking_uri == null && output.mlflow_pipeline_secret_name == null
    )
    error_message = "mlflow outputs do not match enable_mlflow_server"
  }

  # ------------------------------------------------------------ roles passed to the right places
  assert {
    condition = (
      output.emr_job_role_arn == "arn:aws:iam::123456789012:role/emr-job" &&
      output.mwaa_execution_role_arn == "arn:aws:iam::123456789012:role/mwaa-execution" &&
      module.mwaa.environment_execution_role_arn == "arn:aws:iam::123456789012:role/mwaa-execution" &&
      (var.enable_mlflow_server ? module.mlflow[0].wiring.task_role_arn != output.emr_job_role_arn : true)
    )
    error_message = "role ARNs are not wired to the right modules"
  }

  assert {
    condition = (
      module.emr_serverless.release_label == "emr-spark-8.0.0" &&
      module.mwaa.airflow_version == var.mwaa_airflow_version
    )
    error_message = "runtime versions or MWAA wiring"
  }

  # Before the first `make deploy` (no mwaa_release) MWAA runs without requirements/plugins/startup.
  assert {
    condition = var.mwaa_release != null || (
      output.mwaa_active_release.requirements.key == null &&
      output.mwaa_active_release.plugins.key == null &&
      output.mwaa_active_release.startup_script.key == null
    )
    error_message = "MWAA references files that are not uploaded yet"
  }

  # ------------------------------------------------------------ DAG side: exactly dag_side_access.json
  assert {
    condition = output.mwaa_dag_side_access.read_object_arns == tolist([
      for p in jsondecode(file("dag_side_access.json")).read :
      "arn:aws:s3:::${split("/", p)[0]}-bucket/${p}*"
    ])
    error_message = "MWAA read access: ${jsonencode(output.mwaa_dag_side_access.read_object_arns)}"
  }

  assert {
    condition = output.mwaa_dag_side_access.write_object_arns == tolist([
      for p in jsondecode(file("dag_side_access.json")).write :
      "arn:aws:s3:::${split("/", p)[0]}-bucket/${p}*"
    ])
    error_message = "MWAA write access: ${jsonencode(output.mwaa_dag_side_access.write_object_arns)}"
  }

  # ------------------------------------------------------------ log retention per environment
  assert {
    condition = (
      values(module.monitoring.log_group_retention_days) == [for k in range(3) : var.log_retention_days] &&
      values(module.mwaa.log_group_retention_days) == [for k in range(5) : var.log_retention_days]
    )
    error_message = "log retention is not log_retention_days = ${var.log_retention_days}: ${jsonencode(module.monitoring.log_group_retention_days)} ${jsonencode(module.mwaa.log_group_retention_days)}"
  }

  # ------------------------------------------------------------ alerts reach the topic
  assert {
    condition = (
      module.monitoring.emr_failure_rule.target_arn == output.sns_topic_arn &&
      module.monitoring.emr_failure_rule.pattern.source == ["aws.emr-serverless"] &&
      module.monitoring.emr_failure_rule.pattern.detail.state == ["FAILED"] &&
      module.monitoring.emr_failure_rule.pattern.detail.applicationId == [output.emr_serverless_application_id]
    )
    error_message = "the EMR job-failed rule does not send this application's FAILED runs to the topic"
  }

  assert {
    condition = (
      alltrue([for a in values(module.monitoring.alarm_actions) : a.actions == toset([output.sns_topic_arn]) && a.dimensions.Environment == output.mwaa_environment_name]) &&
      module.monitoring.alarm_actions["batchml-${var.environment}-mwaa-scheduler-heartbeat"].missing == "breaching" &&
      (var.enable_mlflow_server ? alltrue([for a in values(module.mlflow[0].wiring.alarm_actions) : a == toset([output.sns_topic_arn])]) : true) &&
      length(output.alarm_names) == (var.enable_mlflow_server ? 5 : 2)
    )
    error_message = "MWAA alarms do not notify the topic: ${jsonencode(output.alarm_names)}"
  }

  # ------------------------------------------------------------ data protection
  assert {
    condition = (
      module.lake_bucket.noncurrent_version_expiration_days == var.lake_noncurrent_version_expiration_days &&
      (var.environment != "prod" || var.lake_noncurrent_version_expiration_days >= 14)
    )
    error_message = "lake noncurrent versions"
  }

  assert {
    condition = (
      length(module.backup) == (var.enable_backup ? 1 : 0) && (var.environment != "prod" || var.enable_backup) &&
      (var.enable_backup ? toset(module.backup[0].selected_resources) == toset(["arn:aws:s3:::lake-bucket", "arn:aws:s3:::artifacts-bucket"]) : true)
    )
    error_message = "prod must back up the lake and the artifacts buckets"
  }

  # ------------------------------------------------------------ MLflow: static for_each keys
  assert {
    condition     = var.enable_mlflow_server ? jsonencode(module.mlflow[0].wiring.client_rule_keys) == jsonencode(["spark"]) : true
    error_message = "MLflow clients must be keyed statically"
  }

  # ------------------------------------------------------------ MLflow: TLS, auth, allowed hosts, image
  assert {
    condition = !var.enable_mlflow_server ? true : (
      module.mlflow[0].wiring.internal &&
      module.mlflow[0].wiring.listener.protocol == "HTTPS" && module.mlflow[0].wiring.listener.port == 443 &&
      startswith(module.mlflow[0].wiring.listener.ssl_policy, "ELBSecurityPolicy-TLS13") &&
      startswith(module.mlflow[0].wiring.listener.certificate_arn, "arn:aws:acm:") &&
      output.mlflow_tracking_uri == "https://${var.mlflow_domain_name}" &&
      module.mlflow[0].wiring.image == "${output.mlflow_ecr_repository_url}:${var.mlflow_image_tag}" &&
      contains(split(",", module.mlflow[0].wiring.environment.ALLOWED_HOSTS), var.mlflow_domain_name) &&
      module.mlflow[0].wiring.environment.DB_APP_USER == "mlflow_app" &&
      startswith(module.mlflow[0].wiring.environment.PIPELINE_SECRET_ARN, "arn:aws:secretsmanager:")
    )
    error_message = "MLflow is not behind an HTTPS internal load balancer with its image and allowed hosts"
  }
}
