#!/usr/bin/env bash
# Print a conf/prod/batchml.yaml snippet filled from this stack's outputs.
# Usage (from infra/terraform, after `terraform apply -var-file=envs/prod.tfvars`):
#   examples/conf-prod-from-outputs.sh > /tmp/conf-prod-snippet.yaml
set -euo pipefail
terraform output -json | python3 -c '
import json, sys
o = {k: v["value"] for k, v in json.load(sys.stdin).items()}
g = lambda k: "null" if o.get(k) is None else o[k]
print(f"""storage:
  landing_uri: {g("landing_uri")}
  lake_uri: {g("lake_uri")}
  artifacts_uri: {g("artifacts_uri")}
  s3:
    region: {g("aws_region")}
mlflow:
  tracking_uri: {g("mlflow_tracking_uri")}  # null: server disabled, set your managed MLflow URI
alerts:
  sns_topic_arn: {g("sns_topic_arn")}
# for the Airflow DAGs / job submission (not read by batchml.yaml):
# emr_serverless_application_id: {g("emr_serverless_application_id")}
# emr_job_role_arn: {g("emr_job_role_arn")}""")
'
