# Production. Replace the network IDs with your VPC's and the MLflow name and zone with yours.
environment = "prod"
aws_region  = "eu-west-1"

vpc_id             = "vpc-0123456789abcdef0"
private_subnet_ids = ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210", "subnet-0a1b2c3d4e5f60718"]

log_retention_days        = 365
access_log_retention_days = 365
force_destroy_buckets     = false

landing_noncurrent_version_expiration_days   = 30
lake_noncurrent_version_expiration_days      = 14
artifacts_noncurrent_version_expiration_days = 90

kms_deletion_window_in_days    = 30
secret_recovery_window_in_days = 30

emr_max_cpu    = "64 vCPU"
emr_max_memory = "256 GB"
emr_max_disk   = "2000 GB"

mwaa_environment_class = "mw1.small"
mwaa_min_workers       = 1
mwaa_max_workers       = 4

enable_mlflow_server            = true
mlflow_image_tag                = "3.17.2-1"
mlflow_domain_name              = "mlflow.prod.batchml.example.com"
mlflow_route53_zone_id          = "Z0123456789ABCDEFGHIJ"
mlflow_db_instance_class        = "db.t4g.small"
mlflow_db_multi_az              = true
mlflow_db_deletion_protection   = true
mlflow_db_backup_retention_days = 14

alert_email_addresses = []

enable_backup         = true
backup_retention_days = 35
# backup_copy_vault_arn = "arn:aws:backup:eu-central-1:123456789012:backup-vault:batchml-prod-dr"

tags = {
  CostCenter = "batchml-prod"
}
