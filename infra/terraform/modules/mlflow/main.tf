# Optional self-hosted MLflow tracking server: ECS Fargate behind a private DNS name
# (Cloud Map), backed by an encrypted, private RDS PostgreSQL instance. Artifacts go
# straight from clients to S3 (--no-serve-artifacts), under their own IAM roles.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name
  port       = 5000
  dns_name   = "mlflow.${var.name}.internal"

  # Builds the backend URI from the injected password (URL-quoted) and execs mlflow,
  # so the password never appears in the task definition.
  entrypoint = <<-PY
    import os, urllib.parse
    pw = urllib.parse.quote(os.environ["DB_PASSWORD"], safe="")
    uri = "postgresql://%s:%s@%s:%s/%s" % (os.environ["DB_USER"], pw, os.environ["DB_HOST"], os.environ["DB_PORT"], os.environ["DB_NAME"])
    os.execvp("mlflow", ["mlflow", "server", "--host", "0.0.0.0", "--port", os.environ["MLFLOW_PORT"],
                         "--backend-store-uri", uri, "--default-artifact-root", os.environ["ARTIFACT_ROOT"],
                         "--no-serve-artifacts"])
  PY
}

# ---------------------------------------------------------------- network
resource "aws_security_group" "mlflow" {
  name        = "${var.name}-mlflow"
  description = "MLflow tracking server: port ${local.port} from Spark and Airflow only"
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "mlflow_from_clients" {
  for_each = toset(var.client_security_group_ids)

  security_group_id            = aws_security_group.mlflow.id
  description                  = "MLflow clients (Spark jobs, Airflow)"
  ip_protocol                  = "tcp"
  from_port                    = local.port
  to_port                      = local.port
  referenced_security_group_id = each.value
}

resource "aws_vpc_security_group_egress_rule" "mlflow_https" {
  security_group_id = aws_security_group.mlflow.id
  description       = "HTTPS to S3, Secrets Manager, CloudWatch Logs and the image registry"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "mlflow_db" {
  security_group_id            = aws_security_group.mlflow.id
  description                  = "PostgreSQL backend store"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.db.id
}

resource "aws_security_group" "db" {
  name        = "${var.name}-mlflow-db"
  description = "MLflow PostgreSQL: reachable only from the MLflow tasks"
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "db_from_mlflow" {
  security_group_id            = aws_security_group.db.id
  description                  = "PostgreSQL from the MLflow tasks"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.mlflow.id
}

resource "aws_service_discovery_private_dns_namespace" "this" {
  name        = "${var.name}.internal"
  description = "Private DNS for batchml services"
  vpc         = var.vpc_id
  tags        = var.tags
}

resource "aws_service_discovery_service" "mlflow" {
  name = "mlflow"

  dns_config {
    namespace_id   = aws_service_discovery_private_dns_namespace.this.id
    routing_policy = "MULTIVALUE"

    dns_records {
      ttl  = 10
      type = "A"
    }
  }

  health_check_custom_config {
    failure_threshold = 1
  }

  tags = var.tags
}

# ---------------------------------------------------------------- database
resource "aws_db_subnet_group" "this" {
  name        = "${var.name}-mlflow"
  description = "Private subnets of the MLflow database"
  subnet_ids  = var.subnet_ids
  tags        = var.tags
}

resource "aws_db_parameter_group" "this" {
  name        = "${var.name}-mlflow-pg${var.db_engine_major_version}"
  description = "MLflow PostgreSQL: force TLS, log connections"
  family      = "postgres${var.db_engine_major_version}"
  tags        = var.tags

  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }

  parameter {
    name  = "log_connections"
    value = "1"
  }

  parameter {
    name  = "log_min_duration_statement"
    value = "1000"
  }
}

resource "aws_db_instance" "this" {
  #checkov:skip=CKV_AWS_118:Enhanced monitoring needs an extra role and costs per instance; basic CloudWatch metrics and Performance Insights suffice for a low-traffic tracking store.
  #checkov:skip=CKV2_AWS_30:Statement-level query logging would write experiment metadata to logs; slow statements (>1 s) and connections are logged instead.
  identifier     = "${var.name}-mlflow"
  engine         = "postgres"
  engine_version = var.db_engine_major_version
  instance_class = var.db_instance_class

  allocated_storage     = var.db_allocated_storage_gb
  max_allocated_storage = var.db_max_allocated_storage_gb
  storage_type          = "gp3"
  storage_encrypted     = true
  kms_key_id            = var.kms_key_arn

  db_name  = "mlflow"
  username = "mlflow"
  # RDS generates and stores the password in Secrets Manager (encrypted with the CMK);
  # no password appears in code, tfvars or state.
  manage_master_user_password         = true
  master_user_secret_kms_key_id       = var.kms_key_arn
  iam_database_authentication_enabled = true

  db_subnet_group_name   = aws_db_subnet_group.this.name
  parameter_group_name   = aws_db_parameter_group.this.name
  vpc_security_group_ids = [aws_security_group.db.id]
  publicly_accessible    = false
  multi_az               = var.db_multi_az

  backup_retention_period    = var.db_backup_retention_days
  copy_tags_to_snapshot      = true
  auto_minor_version_upgrade = true
  deletion_protection        = var.db_deletion_protection
  skip_final_snapshot        = !var.db_deletion_protection
  final_snapshot_identifier  = "${var.name}-mlflow-final"

  enabled_cloudwatch_logs_exports       = ["postgresql", "upgrade"]
  performance_insights_enabled          = true
  performance_insights_kms_key_id       = var.kms_key_arn
  performance_insights_retention_period = 7

  tags = var.tags
}

# ---------------------------------------------------------------- IAM
data "aws_iam_policy_document" "ecs_assume" {
  statement {
    sid     = "EcsTasksAssumeRole"
    effect  = "Allow"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "task_execution" {
  name               = "${var.name}-mlflow-task-execution"
  description        = "ECS agent: pull the MLflow image, write logs, read the DB password secret"
  assume_role_policy = data.aws_iam_policy_document.ecs_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "task_execution" {
  # ecr:GetAuthorizationToken has no resource-level permissions.
  statement {
    sid       = "EcrLogin"
    effect    = "Allow"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid       = "PullImagesFromThisAccount"
    effect    = "Allow"
    actions   = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
    resources = ["arn:${local.partition}:ecr:${local.region}:${local.account_id}:repository/*"]
  }

  statement {
    sid       = "WriteTaskLogs"
    effect    = "Allow"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${var.log_group_arn}:*"]
  }

  statement {
    sid       = "ReadDbPasswordSecret"
    effect    = "Allow"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_db_instance.this.master_user_secret[0].secret_arn]
  }

  statement {
    sid       = "DecryptDbPasswordSecret"
    effect    = "Allow"
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["secretsmanager.${local.region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "task_execution" {
  name   = "batchml-mlflow-task-execution"
  role   = aws_iam_role.task_execution.id
  policy = data.aws_iam_policy_document.task_execution.json
}

resource "aws_iam_role" "task" {
  name               = "${var.name}-mlflow-task"
  description        = "MLflow server: read/write the MLflow artifact prefix (UI artifact browsing)"
  assume_role_policy = data.aws_iam_policy_document.ecs_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "task" {
  statement {
    sid       = "ListArtifactPrefix"
    effect    = "Allow"
    actions   = ["s3:ListBucket"]
    resources = [var.artifacts_bucket_arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.artifact_prefix}/*", var.artifact_prefix]
    }
  }

  statement {
    sid       = "ReadWriteArtifacts"
    effect    = "Allow"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = ["${var.artifacts_bucket_arn}/${var.artifact_prefix}/*"]
  }

  statement {
    sid       = "UsePipelineKey"
    effect    = "Allow"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"]
    resources = [var.kms_key_arn]
  }
}

resource "aws_iam_role_policy" "task" {
  name   = "batchml-mlflow-task"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.task.json
}

# ---------------------------------------------------------------- ECS
resource "aws_ecs_cluster" "this" {
  name = "${var.name}-mlflow"

  setting {
    name  = "containerInsights"
    value = "enabled"
  }

  tags = var.tags
}

resource "aws_ecs_task_definition" "mlflow" {
  family                   = "${var.name}-mlflow"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.task_cpu
  memory                   = var.task_memory
  execution_role_arn       = aws_iam_role.task_execution.arn
  task_role_arn            = aws_iam_role.task.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  container_definitions = jsonencode([
    {
      name      = "mlflow"
      image     = var.image
      essential = true
      # The server writes temporary files (uploads, gunicorn/uvicorn worker state).
      readonlyRootFilesystem = false
      command                = ["python", "-c", local.entrypoint]
      portMappings           = [{ containerPort = local.port, protocol = "tcp" }]
      environment = [
        { name = "DB_HOST", value = aws_db_instance.this.address },
        { name = "DB_PORT", value = tostring(aws_db_instance.this.port) },
        { name = "DB_NAME", value = aws_db_instance.this.db_name },
        { name = "DB_USER", value = aws_db_instance.this.username },
        { name = "MLFLOW_PORT", value = tostring(local.port) },
        { name = "ARTIFACT_ROOT", value = "s3://${var.artifacts_bucket_id}/${var.artifact_prefix}" },
      ]
      secrets = [
        { name = "DB_PASSWORD", valueFrom = "${aws_db_instance.this.master_user_secret[0].secret_arn}:password::" },
      ]
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = var.log_group_name
          awslogs-region        = local.region
          awslogs-stream-prefix = "mlflow"
        }
      }
    }
  ])

  tags = var.tags
}

resource "aws_ecs_service" "mlflow" {
  name            = "mlflow"
  cluster         = aws_ecs_cluster.this.id
  task_definition = aws_ecs_task_definition.mlflow.arn
  desired_count   = var.desired_count
  launch_type     = "FARGATE"

  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = [aws_security_group.mlflow.id]
    assign_public_ip = false
  }

  service_registries {
    registry_arn = aws_service_discovery_service.mlflow.arn
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  lifecycle {
    precondition {
      condition     = var.image != ""
      error_message = "mlflow_image must be set when the MLflow server is enabled (an image with mlflow, psycopg2 and boto3)."
    }
  }

  tags = var.tags
}
