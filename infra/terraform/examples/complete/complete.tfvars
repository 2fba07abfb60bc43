# Every optional part of the batchml stack switched on, for a staging environment:
#   terraform plan -var-file=examples/complete/complete.tfvars
# the self-hosted MLflow server (HTTPS on an internal load balancer, basic auth), AWS Backup with a copy
# to another region, e-mail alerts, an extra network allowed into MLflow, and MWAA running a deployed
# release (the object versions `make deploy` writes to envs/<env>.release.tfvars.json).
# tests/infra plans it with the mocked provider (tests/env.tftest.hcl and tests/complete.tftest.hcl).

environment = "staging"
aws_region  = "eu-west-1"

vpc_id             = "vpc-0123456789abcdef0"
private_subnet_ids = ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"]

log_retention_days                      = 90
lake_noncurrent_version_expiration_days = 14

enable_mlflow_server   = true
mlflow_image_tag       = "3.17.2-1"
mlflow_domain_name     = "mlflow.staging.batchml.example.com"
mlflow_route53_zone_id = "Z0123456789ABCDEFGHIJ"
mlflow_allowed_cidrs   = ["10.99.0.0/16"]

enable_backup         = true
backup_retention_days = 35
backup_copy_vault_arn = "arn:aws:backup:eu-central-1:123456789012:backup-vault:batchml-dr"

alert_email_addresses = ["ml-oncall@example.com"]

mwaa_release = {
  requirements_s3_object_version   = "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY"
  plugins_s3_object_version        = "Ao4l1.NGzm0WeUX8gR0xbwl7gRmjNhDU"
  startup_script_s3_object_version = "v9yBd5DtvUXG.pDuZxmXp8hBcUfpC2Gz"
}
