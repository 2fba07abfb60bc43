# Values the mocked AWS provider returns, so that `terraform test` can plan and "apply" the stack with
# no credentials and no network. Only what providers validate (ARN formats, CIDRs, JSON) or what the
# assertions read needs a realistic value; tests override single resources where identity matters.

mock_data "aws_caller_identity" {
  defaults = { account_id = "123456789012" }
}

mock_data "aws_partition" {
  defaults = { partition = "aws" }
}

mock_data "aws_region" {
  defaults = { name = "eu-west-1" }
}

mock_data "aws_vpc" {
  defaults = { cidr_block = "10.20.0.0/16" }
}

mock_data "aws_elb_service_account" {
  defaults = { arn = "arn:aws:iam::156460612806:root" }
}

# Policy documents are rendered by the real provider only; the mock returns a valid empty policy. What
# the policies grant is checked statically (tests/infra/test_terraform.py) and by checkov.
mock_data "aws_iam_policy_document" {
  defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
}

mock_resource "aws_kms_key" {
  defaults = {
    arn    = "arn:aws:kms:eu-west-1:123456789012:key/0b6b2b8e-1111-4a5b-9c0d-123456789abc"
    key_id = "0b6b2b8e-1111-4a5b-9c0d-123456789abc"
  }
}

mock_resource "aws_sns_topic" {
  defaults = { arn = "arn:aws:sns:eu-west-1:123456789012:mock-topic" }
}

mock_resource "aws_s3_bucket" {
  defaults = { arn = "arn:aws:s3:::mock-bucket", id = "mock-bucket" }
}

mock_resource "aws_iam_role" {
  defaults = { arn = "arn:aws:iam::123456789012:role/mock-role" }
}

mock_resource "aws_cloudwatch_log_group" {
  defaults = { arn = "arn:aws:logs:eu-west-1:123456789012:log-group:mock" }
}

mock_resource "aws_emrserverless_application" {
  defaults = {
    arn = "arn:aws:emr-serverless:eu-west-1:123456789012:/applications/00fmockapp0000"
    id  = "00fmockapp0000"
  }
}

mock_resource "aws_mwaa_environment" {
  defaults = {
    arn           = "arn:aws:airflow:eu-west-1:123456789012:environment/mock"
    webserver_url = "0123abcd-mock.c3.eu-west-1.airflow.amazonaws.com"
  }
}

mock_resource "aws_secretsmanager_secret" {
  defaults = { arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:mock-AbCdEf" }
}

mock_resource "aws_security_group" {
  defaults = { id = "sg-0mock000000000000" }
}

mock_resource "aws_ecr_repository" {
  defaults = {
    arn            = "arn:aws:ecr:eu-west-1:123456789012:repository/mock"
    repository_url = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/mock"
  }
}

mock_resource "aws_acm_certificate" {
  defaults = {
    arn = "arn:aws:acm:eu-west-1:123456789012:certificate/00000000-mock-4000-8000-000000000000"
    domain_validation_options = [{
      domain_name           = "mlflow.example.com"
      resource_record_name  = "_x1.mlflow.example.com."
      resource_record_type  = "CNAME"
      resource_record_value = "_x2.acm-validations.aws."
    }]
  }
}

mock_resource "aws_acm_certificate_validation" {
  defaults = { certificate_arn = "arn:aws:acm:eu-west-1:123456789012:certificate/00000000-mock-4000-8000-000000000000" }
}

mock_resource "aws_lb" {
  defaults = {
    arn        = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/mock/0123456789abcdef"
    arn_suffix = "app/mock/0123456789abcdef"
    dns_name   = "internal-mock-123.eu-west-1.elb.amazonaws.com"
    zone_id    = "Z32O12XQLNTSW2"
  }
}

mock_resource "aws_lb_target_group" {
  defaults = {
    arn        = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/mock/0123456789abcdef"
    arn_suffix = "targetgroup/mock/0123456789abcdef"
  }
}

mock_resource "aws_db_instance" {
  defaults = {
    address     = "mock.abcdefghijkl.eu-west-1.rds.amazonaws.com"
    port        = 5432
    resource_id = "db-MOCKRESOURCEID0000000000"
    master_user_secret = [{
      kms_key_id    = "arn:aws:kms:eu-west-1:123456789012:key/0b6b2b8e-1111-4a5b-9c0d-123456789abc"
      secret_arn    = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!db-mock-AbCdEf"
      secret_status = "active"
    }]
  }
}

mock_resource "aws_ecs_cluster" {
  defaults = { arn = "arn:aws:ecs:eu-west-1:123456789012:cluster/mock" }
}

mock_resource "aws_ecs_task_definition" {
  defaults = { arn = "arn:aws:ecs:eu-west-1:123456789012:task-definition/mock:1" }
}

mock_resource "aws_backup_vault" {
  defaults = { arn = "arn:aws:backup:eu-west-1:123456789012:backup-vault:mock" }
}

mock_resource "aws_route53_record" {
  defaults = { fqdn = "_x1.mlflow.example.com" }
}
