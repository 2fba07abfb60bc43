terraform {
  # 1.10+: the S3 backend's native state locking (`use_lockfile` in envs/*.s3.tfbackend), validation
  # conditions that refer to other variables, and `terraform test` with mock providers (tests/).
  required_version = ">= 1.10"

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
