"""The MLflow server image (infra/mlflow): what its bootstrap runs and writes, without a database.

The database side (creating the IAM user, the auth database) needs RDS and is on the first-apply list
in docs/deploy.md; here: the server's command line (basic auth, allowed hosts, no password anywhere),
the libpq password file with an IAM token, the auth config, and the image pin against Terraform's tag.
"""

from __future__ import annotations

import importlib.util
import re
import socket
import uuid
from pathlib import Path

import boto3
import pytest

REPO = Path(__file__).resolve().parents[2]
IMAGE = REPO / "infra" / "mlflow"

ENV = {"DB_HOST": "db.abc.eu-west-1.rds.amazonaws.com", "DB_PORT": "5432", "DB_NAME": "mlflow", "DB_APP_USER": "mlflow_app",
       "PIPELINE_USER": "batchml-pipeline", "MLFLOW_PORT": "5000", "ARTIFACT_ROOT": "s3://art/artifacts/mlflow",
       "ALLOWED_HOSTS": "mlflow.prod.example.com,internal-x.elb.amazonaws.com"}


def _bootstrap():
    spec = importlib.util.spec_from_file_location("mlflow_bootstrap", IMAGE / "bootstrap.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_server_runs_basic_auth_with_allowed_hosts_and_no_password():
    cmd = _bootstrap().server_command(ENV)
    assert cmd[:4] == ["mlflow", "server", "--app-name", "basic-auth"]
    assert cmd[cmd.index("--allowed-hosts") + 1] == ENV["ALLOWED_HOSTS"]
    assert "--no-serve-artifacts" in cmd
    uri = cmd[cmd.index("--backend-store-uri") + 1]
    assert uri == ("postgresql://mlflow_app@db.abc.eu-west-1.rds.amazonaws.com:5432/mlflow"
                   "?sslmode=verify-full&sslrootcert=/etc/ssl/rds-global-bundle.pem")


def test_password_file_escapes_the_iam_token():
    token = "db.abc.eu-west-1.rds.amazonaws.com:5432/?Action=connect&DBUser=mlflow_app&X-Amz-Signature=ab\\cd"
    line = _bootstrap().passfile_line(ENV["DB_HOST"], "5432", "mlflow_app", token)
    fields = re.split(r"(?<!\\):", line.rstrip("\n"))
    assert fields[:4] == [ENV["DB_HOST"], "5432", "*", "mlflow_app"]
    assert fields[4].replace("\\:", ":").replace("\\\\", "\\") == token


def test_auth_config_makes_the_pipeline_the_admin_and_others_readers():
    text = _bootstrap().auth_config(ENV, "s3cret")
    assert "admin_username = batchml-pipeline\n" in text and "admin_password = s3cret\n" in text
    assert "default_permission = READ\n" in text
    assert "database_uri = postgresql://mlflow_app@" in text and "/mlflow_auth?sslmode=verify-full" in text


def test_image_pins_the_mlflow_version_terraform_deploys():
    version = re.search(r"ARG MLFLOW_VERSION=(\S+)", (IMAGE / "Dockerfile").read_text()).group(1)
    tag = re.search(r'variable "mlflow_image_tag".*?default\s*=\s*"([^"]+)"',
                    (REPO / "infra" / "terraform" / "variables.tf").read_text(), re.S).group(1)
    assert tag.rsplit("-", 1)[0] == version, f"image tag {tag} is not a revision of MLflow {version}"
    assert f'"{tag}"' in (REPO / "infra" / "terraform" / "envs" / "prod.tfvars").read_text()


def test_pipeline_password_is_generated_once_and_kept(monkeypatch):
    """Against moto's Secrets Manager on loopback: the first start generates the password, later starts
    read it, and a concurrent first start cannot store a second one (same idempotency token)."""
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        for key, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_EC2_METADATA_DISABLED": "true"}.items():
            monkeypatch.setenv(key, value)
        client = boto3.client("secretsmanager", region_name="eu-west-1")
        arn = client.create_secret(Name=f"batchml/test-{uuid.uuid4().hex[:8]}/mlflow/pipeline-password")["ARN"]
        bootstrap = _bootstrap()
        first = bootstrap.pipeline_password(client, arn)
        assert len(first) >= 40 and bootstrap.pipeline_password(client, arn) == first
        with pytest.raises(client.exceptions.ResourceExistsException):
            client.put_secret_value(SecretId=arn, SecretString="other", ClientRequestToken=str(uuid.uuid5(uuid.NAMESPACE_URL, arn)))
        assert client.get_secret_value(SecretId=arn)["SecretString"] == first
    finally:
        server.stop()
