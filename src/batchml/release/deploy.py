"""``make deploy ENV=prod``: put a packaged release (``make package`` -> ``dist/``) where AWS runs it.

From ``terraform output -json`` and ``dist/``:

* the release (wheel, ``environment.tar.gz``, ``jobs/``, ``conf/`` with a generated
  ``conf/<env>/batchml.yaml``, ``sql/``, ``dags/`` and ``manifest.json``) goes to
  ``<code_uri>/releases/<commit>/``, where EMR Serverless jobs read it;
* the DAG files go to ``dags_bucket_path`` (DAG files no longer in the release are removed);
* MWAA's ``requirements.txt``, ``plugins.zip`` and the startup script (with the release URI filled in,
  so the DAG side reads the same release's conf) go to ``mwaa_source_files``; their object versions
  are written to ``infra/terraform/envs/<env>.release.tfvars.json`` for the next ``terraform apply``
  and kept with the release (``deploy/mwaa_release.tfvars.json``), which is what a rollback restores;
* then the Airflow side: the ``batchml_spark`` pool (MWAA REST API) and the connection and variables
  Terraform wrote to Secrets Manager.

Every object carries its SHA-256 as metadata; an object that is already there with the same digest is
not uploaded again, so a second deploy of the same commit uploads nothing. docs/deploy.md has the runbook.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)

SPARK_POOL = "batchml_spark"  # batchml.orchestration.operators.SPARK_POOL (tests check they agree)
POOL_SLOTS = 1  # one Spark writer at a time, as on a laptop
RELEASE_PLACEHOLDER = "__BATCHML_RELEASE_URI__"  # in dist/mwaa/startup.sh
RELEASE_DIRS = ("jobs", "conf", "sql", "dags")
MWAA_FILES = {"requirements": "mwaa/requirements.txt", "plugins": "mwaa/plugins.zip", "startup_script": "mwaa/startup.sh"}
SHA_KEY = "sha256"  # S3 user metadata (x-amz-meta-sha256)


class DeployError(RuntimeError):
    """The release, the Terraform outputs or the target do not fit together; nothing more is uploaded."""


# ---------------------------------------------------------------- conf/<env> from terraform outputs
def outputs_from_json(text: str) -> dict[str, Any]:
    """``terraform output -json`` -> {name: value}."""
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise DeployError(f"terraform output is not JSON: {exc}") from None
    if not isinstance(raw, dict) or not raw:
        raise DeployError("terraform output -json is empty: run `terraform apply` first (infra/terraform)")
    return {name: entry["value"] for name, entry in raw.items()}


def _required(outputs: dict[str, Any], *names: str) -> list[Any]:
    missing = [n for n in names if outputs.get(n) in (None, "")]
    if missing:
        raise DeployError(f"terraform outputs missing: {', '.join(missing)} (an older stack? run terraform apply)")
    return [outputs[n] for n in names]


def render_conf(template: dict[str, Any], outputs: dict[str, Any], release_id: str,
                mlflow_tracking_uri: str | None = None) -> dict[str, Any]:
    """The ``conf/<env>/batchml.yaml`` overlay: the template's settings (Spark sizes, timeouts, ...) with
    every value Terraform knows replaced by its output, and the release this conf belongs to."""
    landing, lake, artifacts, region, code_uri, topic, app_id, role, log_uri, log_groups, conn_id = _required(
        outputs, "landing_uri", "lake_uri", "artifacts_uri", "aws_region", "code_uri", "sns_topic_arn",
        "emr_serverless_application_id", "emr_job_role_arn", "emr_log_uri", "log_group_names",
        "airflow_emr_connection_id")
    conf = json.loads(json.dumps(template))  # a deep copy of plain YAML data
    storage = conf.setdefault("storage", {})
    storage.update(engine="delta-rs", landing_uri=landing, lake_uri=lake, artifacts_uri=artifacts)
    storage.setdefault("s3", {})["region"] = region
    mlflow = conf.setdefault("mlflow", {})
    mlflow["tracking_uri"] = mlflow_tracking_uri or outputs.get("mlflow_tracking_uri")  # an explicit URI wins
    if not mlflow["tracking_uri"]:
        raise DeployError("mlflow_tracking_uri is null (enable_mlflow_server = false): pass --mlflow-tracking-uri "
                          "with your managed MLflow's URI")
    mlflow["artifact_root"] = f"{artifacts}/mlflow"
    conf["alerts"] = {"sinks": [*_other_sinks(template), {"kind": "sns", "topic_arn": topic}]}
    emr = conf.setdefault("orchestration", {}).setdefault("emr_serverless", {})
    conf["orchestration"]["submit"] = "emr-serverless"
    emr.update(application_id=app_id, execution_role_arn=role, release_uri=f"{code_uri}/releases/{release_id}",
               log_uri=log_uri, log_group=log_groups["spark"], aws_conn_id=conn_id, region=region)
    if outputs.get("mlflow_pipeline_secret_name"):
        # EMR Serverless resolves EMR.secret@<name> from Secrets Manager when the job starts (job role).
        emr["spark_conf"] = {**emr.get("spark_conf", {}),
                             "spark.emr-serverless.driverEnv.MLFLOW_TRACKING_USERNAME": outputs["mlflow_pipeline_username"],
                             "spark.emr-serverless.driverEnv.MLFLOW_TRACKING_PASSWORD":
                                 f"EMR.secret@{outputs['mlflow_pipeline_secret_name']}"}
    if outputs.get("online_table_name"):  # the online feature store (stacks from before it have none)
        online = conf.setdefault("online", {})
        online["backend"] = "dynamodb"
        online.setdefault("dynamodb", {}).update(table=outputs["online_table_name"], region=region)
    left = [line.strip() for line in yaml.safe_dump(conf).splitlines() if "REPLACE" in line]
    if left:
        raise DeployError(f"placeholders left in the generated conf: {left}")
    return conf


def _other_sinks(template: dict[str, Any]) -> list[dict]:
    return [s for s in (template.get("alerts") or {}).get("sinks", []) if s.get("kind") != "sns"]


def conf_yaml(conf: dict[str, Any], release_id: str) -> str:
    header = (f"# Generated by batchml.release.deploy from `terraform output -json` for release {release_id}.\n"
              "# Edit conf/<env>/batchml.yaml in the repository (the template), not this file.\n")
    return header + yaml.safe_dump(conf, sort_keys=False)


# ---------------------------------------------------------------- what to upload
@dataclass(frozen=True)
class Upload:
    key: str  # s3 key in the bucket
    bucket: str
    sha256: str
    path: Path | None = None  # a file from dist/ ...
    data: bytes | None = None  # ... or generated content

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass
class Report:
    release_uri: str
    uploaded: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    mwaa_release: dict[str, str] = field(default_factory=dict)
    airflow: list[str] = field(default_factory=list)


def split_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise DeployError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key.strip("/")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(dist: Path) -> dict[str, Any]:
    """The manifest, after checking that every file it lists is in dist/ with that digest and size."""
    path = dist / "manifest.json"
    if not path.is_file():
        raise DeployError(f"{path} not found: run `make package` first")
    manifest = json.loads(path.read_text())
    for entry in manifest["files"]:
        file = dist / entry["path"]
        if not file.is_file():
            raise DeployError(f"{file}: listed in manifest.json but missing; rebuild with `make package`")
        if file.stat().st_size != entry["size"] or sha256_of(file) != entry["sha256"]:
            raise DeployError(f"{file}: differs from manifest.json (changed after `make package`?)")
    return manifest


def plan_uploads(dist: Path, manifest: dict[str, Any], outputs: dict[str, Any], env: str,
                 conf_text: str) -> tuple[list[Upload], str]:
    """Every object this release needs, and the release URI."""
    code_bucket, code_key = split_uri(_required(outputs, "code_uri")[0])
    release_key = f"{code_key}/releases/{manifest['commit']}"
    release_uri = f"s3://{code_bucket}/{release_key}"
    generated = f"conf/{env}/batchml.yaml"
    files = {e["path"]: e["sha256"] for e in manifest["files"]}
    uploads = [Upload(f"{release_key}/manifest.json", code_bucket, sha256_of(dist / "manifest.json"), dist / "manifest.json")]
    for rel, digest in sorted(files.items()):
        in_release = rel.endswith(".whl") or rel == "environment.tar.gz" or rel.split("/", 1)[0] in RELEASE_DIRS
        if in_release and rel != generated:
            uploads.append(Upload(f"{release_key}/{rel}", code_bucket, digest, dist / rel))
    data = conf_text.encode()
    uploads.append(Upload(f"{release_key}/{generated}", code_bucket, hashlib.sha256(data).hexdigest(), data=data))

    dags_bucket, dags_key = split_uri(_required(outputs, "dags_bucket_path")[0])
    for rel, digest in sorted(files.items()):
        if rel.startswith("dags/") and rel.endswith(".py"):
            uploads.append(Upload(f"{dags_key}/{rel.removeprefix('dags/')}", dags_bucket, digest, dist / rel))

    targets = _required(outputs, "mwaa_source_files")[0]
    for name, rel in MWAA_FILES.items():
        bucket, key = split_uri(targets[name])
        if name == "startup_script":
            text = (dist / rel).read_text()
            if RELEASE_PLACEHOLDER not in text:
                raise DeployError(f"{dist / rel}: no {RELEASE_PLACEHOLDER} placeholder to fill in")
            data = text.replace(RELEASE_PLACEHOLDER, release_uri).encode()
            uploads.append(Upload(key, bucket, hashlib.sha256(data).hexdigest(), data=data))
        else:
            uploads.append(Upload(key, bucket, files.get(rel) or sha256_of(dist / rel), dist / rel))
    return uploads, release_uri


# ---------------------------------------------------------------- S3
def _remote_sha(s3, upload: Upload) -> str | None:
    from botocore.exceptions import ClientError

    try:
        head = s3.head_object(Bucket=upload.bucket, Key=upload.key)
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    return head.get("Metadata", {}).get(SHA_KEY)


def put(s3, upload: Upload) -> bool:
    """Upload unless the same content is already there; True when uploaded."""
    if _remote_sha(s3, upload) == upload.sha256:
        return False
    extra = {"Metadata": {SHA_KEY: upload.sha256}}
    if upload.path is not None:
        s3.upload_file(str(upload.path), upload.bucket, upload.key, ExtraArgs=extra)  # multipart when large
    else:
        s3.put_object(Bucket=upload.bucket, Key=upload.key, Body=upload.data, **extra)
    return True


def remove_stale_dags(s3, outputs: dict[str, Any], uploads: list[Upload]) -> list[str]:
    """DAG files in the DAGs folder that this release does not have (a DAG removed or renamed)."""
    bucket, prefix = split_uri(outputs["dags_bucket_path"])
    keep = {u.key for u in uploads if u.bucket == bucket and u.key.startswith(prefix + "/")}
    stale = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        stale += [o["Key"] for o in page.get("Contents", []) if o["Key"].endswith(".py") and o["Key"] not in keep]
    for key in stale:
        s3.delete_object(Bucket=bucket, Key=key)
    return [f"s3://{bucket}/{k}" for k in stale]


def mwaa_versions(s3, outputs: dict[str, Any]) -> dict[str, str]:
    """Object versions of MWAA's three files, as var.mwaa_release takes them."""
    versions = {}
    for name in MWAA_FILES:
        bucket, key = split_uri(outputs["mwaa_source_files"][name])
        version = s3.head_object(Bucket=bucket, Key=key).get("VersionId")
        if not version or version == "null":
            raise DeployError(f"s3://{bucket}/{key} has no object version: the bucket must be versioned (MWAA needs it)")
        versions[f"{name}_s3_object_version"] = version
    return versions


# ---------------------------------------------------------------- Airflow side
def check_connections(secrets, outputs: dict[str, Any]) -> list[str]:
    """The EMR Serverless connection and the two variables that Terraform put in Secrets Manager (the
    Airflow secrets backend) exist and say what the outputs say."""
    prefix, conn_id = _required(outputs, "secrets_prefix", "airflow_emr_connection_id")
    conn_name = f"{prefix}/airflow/connections/{conn_id}"
    conn = json.loads(_secret(secrets, conn_name))
    if conn.get("conn_type") != "aws" or conn.get("extra", {}).get("region_name") != outputs["aws_region"]:
        raise DeployError(f"secret {conn_name}: expected an aws connection in {outputs['aws_region']}, got {conn}")
    expected = {"batchml_emr_application_id": outputs["emr_serverless_application_id"],
                "batchml_emr_job_role_arn": outputs["emr_job_role_arn"]}
    for name, value in expected.items():
        got = _secret(secrets, f"{prefix}/airflow/variables/{name}")
        if got != value:
            raise DeployError(f"Airflow variable {name} is {got!r} in Secrets Manager, terraform says {value!r}")
    return [f"connection {conn_id} ok", *(f"variable {n} ok" for n in expected)]


def _secret(secrets, name: str) -> str:
    from botocore.exceptions import ClientError

    try:
        return secrets.get_secret_value(SecretId=name)["SecretString"]
    except ClientError as exc:
        raise DeployError(f"secret {name}: {exc.response['Error']['Code']} (was terraform apply run?)") from None


def ensure_pool(mwaa, environment: str) -> str:
    """Create or update the Spark pool through MWAA's Airflow REST API (not testable against moto, which
    has no MWAA; docs/deploy.md lists it for the first apply)."""
    from botocore.exceptions import BotoCoreError, ClientError

    body = {"name": SPARK_POOL, "slots": POOL_SLOTS, "description": "batchml Spark jobs (one writer at a time)",
            "include_deferred": False}
    try:
        try:
            mwaa.invoke_rest_api(Name=environment, Path="/pools", Method="POST", Body=body)
            return f"pool {SPARK_POOL} created ({POOL_SLOTS} slot)"
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "RestApiClientException" or exc.response.get("RestApiStatusCode") != 409:
                raise
        mwaa.invoke_rest_api(Name=environment, Path=f"/pools/{SPARK_POOL}", Method="PATCH", Body=body)
        return f"pool {SPARK_POOL} updated ({POOL_SLOTS} slot)"
    except (ClientError, BotoCoreError) as exc:
        raise DeployError(f"MWAA environment {environment}: cannot set pool {SPARK_POOL} through its REST API "
                          f"({exc}). The release is uploaded; rerun when the environment is AVAILABLE, or pass "
                          "--skip-airflow") from None


# ---------------------------------------------------------------- the whole deploy
def deploy(dist: Path, outputs: dict[str, Any], env: str, session, *, airflow: bool = True,
           mlflow_tracking_uri: str | None = None, tfvars_out: Path | None = None) -> Report:
    manifest = read_manifest(dist)
    template_path = dist / "conf" / env / "batchml.yaml"
    if not template_path.is_file():
        raise DeployError(f"{template_path} not found: the release has no conf for environment {env!r}")
    template = yaml.safe_load(template_path.read_text()) or {}
    conf = render_conf(template, outputs, manifest["commit"], mlflow_tracking_uri)
    uploads, release_uri = plan_uploads(dist, manifest, outputs, env, conf_yaml(conf, manifest["commit"]))
    s3 = session.client("s3")
    report = Report(release_uri)
    for upload in uploads:
        (report.uploaded if put(s3, upload) else report.unchanged).append(upload.uri)
    report.removed = remove_stale_dags(s3, outputs, uploads)
    report.mwaa_release = mwaa_versions(s3, outputs)
    record = json.dumps({"mwaa_release": report.mwaa_release}, indent=2) + "\n"
    bucket, key = split_uri(release_uri)
    rec = Upload(f"{key}/deploy/mwaa_release.tfvars.json", bucket, hashlib.sha256(record.encode()).hexdigest(),
                 data=record.encode())
    (report.uploaded if put(s3, rec) else report.unchanged).append(rec.uri)
    if tfvars_out is not None:
        tfvars_out.write_text(record)
    report.airflow = check_connections(session.client("secretsmanager"), outputs)
    if airflow:
        report.airflow.append(ensure_pool(session.client("mwaa"), _required(outputs, "mwaa_environment_name")[0]))
    else:
        report.airflow.append(f"pool {SPARK_POOL}: skipped (--skip-airflow); create it with "
                              f"`airflow pools set {SPARK_POOL} {POOL_SLOTS} ...` or rerun without --skip-airflow")
    return report


def terraform_outputs(terraform_dir: Path) -> dict[str, Any]:
    try:
        res = subprocess.run(["terraform", f"-chdir={terraform_dir}", "output", "-json"], capture_output=True,
                             text=True, check=True)
    except FileNotFoundError:
        raise DeployError("terraform is not on PATH (or pass --outputs FILE with `terraform output -json`)") from None
    except subprocess.CalledProcessError as exc:
        raise DeployError(f"terraform output failed in {terraform_dir}: {exc.stderr.strip()}") from None
    return outputs_from_json(res.stdout)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m batchml.release.deploy", description=__doc__.split("\n\n")[0])
    p.add_argument("--env", required=True, help="conf overlay and Terraform environment, e.g. prod")
    p.add_argument("--dist", type=Path, default=Path("dist"), help="output of `make package`")
    p.add_argument("--terraform-dir", type=Path, default=Path("infra/terraform"))
    p.add_argument("--outputs", type=Path, help="a saved `terraform output -json` instead of running terraform")
    p.add_argument("--mlflow-tracking-uri", help="when the stack runs no MLflow server: your managed MLflow URI")
    p.add_argument("--skip-airflow", action="store_true", help="do not create the pool through MWAA's REST API")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        outputs = outputs_from_json(args.outputs.read_text()) if args.outputs else terraform_outputs(args.terraform_dir)
        tfvars = args.terraform_dir / "envs" / f"{args.env}.release.tfvars.json"
        report = deploy(args.dist, outputs, args.env, boto3.Session(region_name=outputs.get("aws_region")),
                        airflow=not args.skip_airflow, mlflow_tracking_uri=args.mlflow_tracking_uri, tfvars_out=tfvars)
    except DeployError as exc:
        print(f"deploy: error: {exc}", file=sys.stderr)
        return 1
    except (BotoCoreError, ClientError) as exc:  # credentials, access, network: one line, not a traceback
        print(f"deploy: AWS error: {exc}", file=sys.stderr)
        return 1
    print(f"release {report.release_uri}: {len(report.uploaded)} uploaded, {len(report.unchanged)} unchanged, "
          f"{len(report.removed)} stale DAG file(s) removed")
    for line in report.airflow:
        print(f"  {line}")
    print(f"MWAA files recorded in {tfvars}; apply them with:\n"
          f"  terraform -chdir={args.terraform_dir} apply -var-file=envs/{args.env}.tfvars -var-file=envs/{args.env}.release.tfvars.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
