terraform {
  # 1.6+: stable `terraform test`, `check` blocks and provider-defined validation used in CI.
  required_version = ">= 1.6"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.80, < 6.0"
    }
  }

  # State lives in S3 with a per-environment key. Configure it at init time:
  #   terraform init -backend-config=envs/prod.s3.tfbackend
  # (see README.md). CI validates with `terraform init -backend=false`.
  backend "s3" {}
}
