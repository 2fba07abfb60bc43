# Development: small, cheap, disposable. Replace the network IDs with your VPC's.
environment = "dev"
aws_region  = "eu-west-1"

vpc_id             = "vpc-0123456789abcdef0"
private_subnet_ids = ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"]

log_retention_days        = 30
access_log_retention_days = 90
force_destroy_buckets     = true

landing_noncurrent_version_expiration_days   = 7
lake_noncurrent_version_expiration_days      = 1
artifacts_noncurrent_version_expiration_days = 30

kms_deletion_window_in_days    = 7
secret_recovery_window_in_days = 0

emr_max_cpu    = "16 vCPU"
emr_max_memory = "64 GB"
emr_max_disk   = "500 GB"

mwaa_environment_class = "mw1.micro"
mwaa_min_workers       = 1
mwaa_max_workers       = 1

# dev tracks runs in a managed/shared MLflow or locally; no server here.
enable_mlflow_server = false

alert_email_addresses = []

# dev data is disposable: no AWS Backup (versioning still protects against slips).
enable_backup = false

tags = {
  CostCenter = "batchml-dev"
}
