"""Entrypoint of the batchml MLflow server image (infra/mlflow/Dockerfile, run by ECS).

1. With the RDS master password, read fresh from Secrets Manager at every start (RDS rotates it), make
   sure the database user ``DB_APP_USER`` exists with IAM authentication (``rds_iam``) and owns the
   auth database. The master password is not used after that.
2. Make sure the pipeline user's password exists in ``PIPELINE_SECRET_ARN``: generated here on the very
   first start, so it is in no code, tfvars or Terraform state.
3. Start ``mlflow server --app-name basic-auth --allowed-hosts ...`` logging in as ``DB_APP_USER`` with
   IAM auth tokens: libpq reads the password from ``PGPASSFILE`` at every new connection, and this
   process rewrites that file with a fresh 15-minute token every ``TOKEN_REFRESH_SECONDS``.
Every setting comes from the task definition's environment (none is a secret).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

CA_BUNDLE = "/etc/ssl/rds-global-bundle.pem"
AUTH_DB = "mlflow_auth"
TOKEN_REFRESH_SECONDS = 600  # tokens live 15 minutes


def dsn(env: dict[str, str], database: str) -> str:
    """SQLAlchemy URI without a password: libpq takes it from PGPASSFILE."""
    return (f"postgresql://{env['DB_APP_USER']}@{env['DB_HOST']}:{env['DB_PORT']}/{database}"
            f"?sslmode=verify-full&sslrootcert={CA_BUNDLE}")


def passfile_line(host: str, port: str, user: str, token: str) -> str:
    """One ~/.pgpass line; ':' and '\\' inside fields are escaped (IAM tokens contain ':')."""
    def esc(value: str) -> str:
        return value.replace("\\", "\\\\").replace(":", "\\:")
    return f"{esc(host)}:{port}:*:{esc(user)}:{esc(token)}\n"


def auth_config(env: dict[str, str], admin_password: str) -> str:
    """basic_auth.ini: the pipeline user is the admin; everyone else reads only until granted more."""
    return ("[mlflow]\n"
            "default_permission = READ\n"
            f"database_uri = {dsn(env, AUTH_DB)}\n"
            f"admin_username = {env['PIPELINE_USER']}\n"
            f"admin_password = {admin_password}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")


def server_command(env: dict[str, str]) -> list[str]:
    return ["mlflow", "server", "--app-name", "basic-auth", "--host", "0.0.0.0", "--port", env["MLFLOW_PORT"],
            "--backend-store-uri", dsn(env, env["DB_NAME"]), "--default-artifact-root", env["ARTIFACT_ROOT"],
            "--no-serve-artifacts", "--allowed-hosts", env["ALLOWED_HOSTS"]]


def ensure_app_user(env: dict[str, str], master: dict[str, str]) -> None:
    import psycopg2
    from psycopg2 import sql

    conn = psycopg2.connect(host=env["DB_HOST"], port=env["DB_PORT"], dbname=env["DB_NAME"], user=master["username"],
                            password=master["password"], sslmode="verify-full", sslrootcert=CA_BUNDLE)
    conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
    app = sql.Identifier(env["DB_APP_USER"])
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (env["DB_APP_USER"],))
        if not cur.fetchone():
            cur.execute(sql.SQL("CREATE ROLE {} LOGIN").format(app))
        cur.execute(sql.SQL("GRANT rds_iam TO {}").format(app))
        cur.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(app))  # lets the master create its database
        cur.execute(sql.SQL("GRANT ALL ON DATABASE {} TO {}").format(sql.Identifier(env["DB_NAME"]), app))
        cur.execute(sql.SQL("GRANT ALL ON SCHEMA public TO {}").format(app))
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (AUTH_DB,))
        if not cur.fetchone():
            cur.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(AUTH_DB), app))
    conn.close()


def pipeline_password(client, secret_arn: str) -> str:
    """The secret's value; on the first start, generate it. The idempotency token makes concurrent first
    starts agree: only one PutSecretValue with this token can store a value."""
    try:
        return client.get_secret_value(SecretId=secret_arn)["SecretString"]
    except client.exceptions.ResourceNotFoundException:  # the secret exists but has no value yet
        pass
    token = str(uuid.uuid5(uuid.NAMESPACE_URL, secret_arn))
    try:
        client.put_secret_value(SecretId=secret_arn, SecretString=secrets.token_urlsafe(32), ClientRequestToken=token)
    except client.exceptions.ResourceExistsException:
        pass  # another task stored it first
    return client.get_secret_value(SecretId=secret_arn)["SecretString"]


def refresh_token(rds, env: dict[str, str], passfile: Path) -> None:
    token = rds.generate_db_auth_token(DBHostname=env["DB_HOST"], Port=int(env["DB_PORT"]),
                                       DBUsername=env["DB_APP_USER"], Region=env["AWS_REGION"])
    tmp = passfile.with_suffix(".tmp")
    tmp.write_text(passfile_line(env["DB_HOST"], env["DB_PORT"], env["DB_APP_USER"], token))
    tmp.chmod(0o600)  # libpq ignores a password file others can read
    tmp.replace(passfile)


def main() -> int:
    import json

    import boto3

    env = dict(os.environ)
    region = env["AWS_REGION"]
    secretsmanager = boto3.client("secretsmanager", region_name=region)
    master = json.loads(secretsmanager.get_secret_value(SecretId=env["DB_MASTER_SECRET_ARN"])["SecretString"])
    ensure_app_user(env, master)
    del master
    home = Path.home()
    config = home / "basic_auth.ini"
    config.write_text(auth_config(env, pipeline_password(secretsmanager, env["PIPELINE_SECRET_ARN"])))
    config.chmod(0o600)
    passfile = home / ".pgpass"
    rds = boto3.client("rds", region_name=region)
    refresh_token(rds, env, passfile)
    child_env = {**env, "PGPASSFILE": str(passfile), "MLFLOW_AUTH_CONFIG_PATH": str(config)}
    server = subprocess.Popen(server_command(env), env=child_env)
    signal.signal(signal.SIGTERM, lambda *_: server.terminate())  # ECS stops the task with SIGTERM
    last = time.monotonic()
    while server.poll() is None:
        time.sleep(5)
        if time.monotonic() - last >= TOKEN_REFRESH_SECONDS:
            refresh_token(rds, env, passfile)
            last = time.monotonic()
    return server.returncode


if __name__ == "__main__":
    sys.exit(main())
