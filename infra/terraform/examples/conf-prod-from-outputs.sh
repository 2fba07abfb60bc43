#!/usr/bin/env bash
# Print conf/prod/batchml.yaml for a release, filled from this stack's outputs (`make deploy` does the
# same and uploads it with the release; this shows what it will write).
# Usage (from infra/terraform, after `terraform apply -var-file=envs/prod.tfvars`):
#   examples/conf-prod-from-outputs.sh [RELEASE_ID] > /tmp/batchml.yaml     (default: git HEAD)
# Checks: the result loads with batchml's config loader (tests/infra/test_terraform.py).
set -euo pipefail
release="${1:-$(git rev-parse HEAD)}"
terraform output -json | batchml --env prod conf-from-terraform --release "$release" --outputs -
