# Minimal use of the batchml root module: one environment, no MLflow server
# (runs are tracked in a managed MLflow configured in conf/, see the README).

provider "aws" {
  region = "eu-west-1"
}

module "batchml" {
  source = "../.."

  environment        = "dev"
  aws_region         = "eu-west-1"
  vpc_id             = "vpc-0123456789abcdef0"
  private_subnet_ids = ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"]

  enable_mlflow_server = false
}

output "landing_uri" {
  description = "S3 URI of landing data."
  value       = module.batchml.landing_uri
}

output "lake_uri" {
  description = "S3 URI of the Delta lake."
  value       = module.batchml.lake_uri
}

output "emr_serverless_application_id" {
  description = "EMR Serverless application ID."
  value       = module.batchml.emr_serverless_application_id
}
