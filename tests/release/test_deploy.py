"""`make deploy` against moto's S3 and Secrets Manager on loopback, from a fake `dist/` with the layout
`make package` writes and a fake `terraform output -json`: what lands where, that the deployed conf
loads from S3 as EMR and MWAA load it, and that a second deploy of the same commit uploads nothing.
moto has no MWAA, so the pool step (MWAA's REST API) is skipped here and says so."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path

import boto3
import pytest
import yaml

from batchml.config import load_config
from batchml.release import deploy as d
from tests.servers import free_port

REPO = Path(__file__).resolve().parents[2]
COMMIT = "0123abc"
REGION = "eu-west-1"
ART = "batchml-prod-artifacts-123456789012-eu-west-1"


@pytest.fixture(scope="module")
def moto_endpoint():
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def aws(moto_endpoint, monkeypatch):
    """A fresh moto account on loopback; the buckets and secrets as `terraform apply` leaves them."""
    import urllib.request

    endpoint = moto_endpoint
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=10).close()
    for key, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_ENDPOINT_URL": endpoint,
                       "AWS_REGION": REGION, "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(key, value)
    session = boto3.Session(region_name=REGION)
    s3 = session.client("s3")
    s3.create_bucket(Bucket=ART, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_bucket_versioning(Bucket=ART, VersioningConfiguration={"Status": "Enabled"})
    secrets = session.client("secretsmanager")
    secrets.create_secret(Name="batchml/prod/airflow/connections/batchml_emr_serverless",
                          SecretString=json.dumps({"conn_type": "aws", "extra": {"region_name": REGION}}))
    for name, value in {"batchml_emr_application_id": OUTPUTS["emr_serverless_application_id"],
                        "batchml_emr_job_role_arn": OUTPUTS["emr_job_role_arn"]}.items():
        secrets.create_secret(Name=f"batchml/prod/airflow/variables/{name}", SecretString=value)
    return session, endpoint


OUTPUTS = {
    "landing_uri": "s3://batchml-prod-landing-123456789012-eu-west-1/landing",
    "lake_uri": "s3://batchml-prod-lake-123456789012-eu-west-1/lake",
    "artifacts_uri": f"s3://{ART}/artifacts", "code_uri": f"s3://{ART}/code", "emr_log_uri": f"s3://{ART}/logs/emr/",
    "dags_bucket_path": f"s3://{ART}/airflow/dags", "aws_region": REGION,
    "mwaa_source_files": {"requirements": f"s3://{ART}/airflow/requirements.txt",
                          "plugins": f"s3://{ART}/airflow/plugins.zip", "startup_script": f"s3://{ART}/airflow/startup.sh"},
    "mwaa_environment_name": "batchml-prod-airflow", "secrets_prefix": "batchml/prod",
    "airflow_emr_connection_id": "batchml_emr_serverless",
    "sns_topic_arn": "arn:aws:sns:eu-west-1:123456789012:batchml-prod-pipeline-alerts",
    "emr_serverless_application_id": "00fabc123", "emr_job_role_arn": "arn:aws:iam::123456789012:role/batchml-prod-emr-job",
    "log_group_names": {"spark": "/batchml/prod/emr-serverless", "pipeline": "/batchml/prod/pipeline",
                        "mlflow": "/batchml/prod/mlflow"},
    "mlflow_tracking_uri": "https://mlflow.prod.example.com", "mlflow_pipeline_username": "batchml-pipeline",
    "mlflow_pipeline_secret_name": "batchml/prod/mlflow/pipeline-password",
}


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def make_dist(root: Path, commit: str = COMMIT) -> Path:
    """The layout `make package` writes (docs/deploy.md), small."""
    dist = root / "dist"
    wheel = "batchml-0.4.0-py3-none-any.whl"
    files = {
        wheel: _zip({"batchml/__init__.py": b"__version__ = '0.4.0'\n"}),
        "environment.tar.gz": _tar({"bin/python": b"#!/bin/sh\n"}),
        "jobs/ingest.py": b"import sys\nfrom batchml.cli import run_job\nsys.exit(run_job('ingest', sys.argv[1:]))\n",
        "jobs/score.py": b"# score entrypoint\n",
        "sql/features/card_transactions.sql": b"select 1\n",
        "dags/batchml_nightly.py": b"# nightly DAG\n",
        "dags/batchml_training.py": b"# training DAG\n",
        "mwaa/requirements.txt": (b"--constraint https://raw.githubusercontent.com/apache/airflow/constraints-3.3.1/"
                                  b"constraints-3.12.txt\nbatchml[airflow] @ file:///usr/local/airflow/plugins/" + wheel.encode() + b"\n"),
        "mwaa/plugins.zip": _zip({wheel: b"wheel bytes"}),
        "mwaa/startup.sh": b"#!/bin/sh\nexport BATCHML_CONF_DIR=__BATCHML_RELEASE_URI__/conf\nexport BATCHML_ENV=prod\n",
    }
    for rel in ("conf/base/batchml.yaml", "conf/prod/batchml.yaml", *[str(p.relative_to(REPO)) for p in (REPO / "conf" / "base" / "datasets").glob("*.yaml")]):
        files[rel] = (REPO / rel).read_bytes()
    entries = []
    for rel, data in sorted(files.items()):
        (dist / rel).parent.mkdir(parents=True, exist_ok=True)
        (dist / rel).write_bytes(data)
        entries.append({"path": rel, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)})
    (dist / "manifest.json").write_text(json.dumps({"name": "batchml", "version": "0.4.0", "commit": commit,
                                                    "files": entries}, indent=2))
    return dist


def _keys(s3, prefix: str) -> set[str]:
    return {o["Key"] for o in s3.list_objects_v2(Bucket=ART, Prefix=prefix).get("Contents", [])}


def _body(s3, key: str) -> bytes:
    return s3.get_object(Bucket=ART, Key=key)["Body"].read()


def test_deploy_puts_everything_where_aws_reads_it(aws, tmp_path, monkeypatch):
    session, endpoint = aws
    s3 = session.client("s3")
    s3.put_object(Bucket=ART, Key="airflow/dags/old_dag.py", Body=b"# removed in this release\n")
    dist = make_dist(tmp_path)
    tfvars = tmp_path / "prod.release.tfvars.json"

    report = d.deploy(dist, OUTPUTS, "prod", session, airflow=False, tfvars_out=tfvars)

    release = f"code/releases/{COMMIT}"
    assert report.release_uri == f"s3://{ART}/{release}"
    assert _keys(s3, release + "/") >= {
        f"{release}/manifest.json", f"{release}/batchml-0.4.0-py3-none-any.whl", f"{release}/environment.tar.gz",
        f"{release}/jobs/ingest.py", f"{release}/jobs/score.py", f"{release}/conf/base/batchml.yaml",
        f"{release}/conf/prod/batchml.yaml", f"{release}/sql/features/card_transactions.sql",
        f"{release}/dags/batchml_nightly.py", f"{release}/deploy/mwaa_release.tfvars.json"}
    assert not any("/mwaa/" in k for k in _keys(s3, release + "/")), "MWAA files go to MWAA's paths, not the release"
    assert _keys(s3, "airflow/dags/") == {"airflow/dags/batchml_nightly.py", "airflow/dags/batchml_training.py"}
    assert report.removed == [f"s3://{ART}/airflow/dags/old_dag.py"]
    assert _body(s3, "airflow/requirements.txt") == (dist / "mwaa" / "requirements.txt").read_bytes()
    assert _body(s3, "airflow/plugins.zip") == (dist / "mwaa" / "plugins.zip").read_bytes()
    startup = _body(s3, "airflow/startup.sh").decode()
    assert f"BATCHML_CONF_DIR=s3://{ART}/{release}/conf" in startup and "__BATCHML" not in startup

    # MWAA's object versions: in the tfvars for `terraform apply` and kept with the release for a rollback.
    recorded = json.loads(tfvars.read_text())["mwaa_release"]
    for name, key in (("requirements", "airflow/requirements.txt"), ("plugins", "airflow/plugins.zip"),
                      ("startup_script", "airflow/startup.sh")):
        assert recorded[f"{name}_s3_object_version"] == s3.head_object(Bucket=ART, Key=key)["VersionId"]
    assert json.loads(_body(s3, f"{release}/deploy/mwaa_release.tfvars.json"))["mwaa_release"] == recorded
    assert report.airflow[:3] == ["connection batchml_emr_serverless ok", "variable batchml_emr_application_id ok",
                                  "variable batchml_emr_job_role_arn ok"]
    assert "pool batchml_spark: skipped" in report.airflow[3]

    # The deployed conf loads from S3, as the EMR driver and the MWAA side load it (BATCHML_CONF_DIR).
    config = load_config("prod", f"s3://{ART}/{release}/conf", environ={"BATCHML_S3_ENDPOINT_URL": endpoint,
                                                                        "AWS_REGION": REGION})
    emr = config.orchestration.emr_serverless
    assert emr.release_uri == report.release_uri and emr.application_id == "00fabc123"
    assert emr.aws_conn_id == "batchml_emr_serverless" and emr.log_group == "/batchml/prod/emr-serverless"
    assert emr.spark_conf["spark.emr-serverless.driverEnv.MLFLOW_TRACKING_PASSWORD"] == \
        "EMR.secret@batchml/prod/mlflow/pipeline-password"
    assert config.storage.lake_uri == OUTPUTS["lake_uri"] and config.mlflow.tracking_uri == OUTPUTS["mlflow_tracking_uri"]
    assert [(s.kind, s.topic_arn) for s in config.alerts.sinks] == [("sns", OUTPUTS["sns_topic_arn"])]


def test_second_deploy_of_the_same_commit_uploads_nothing(aws, tmp_path):
    session, _ = aws
    dist = make_dist(tmp_path)
    first = d.deploy(dist, OUTPUTS, "prod", session, airflow=False)
    second = d.deploy(dist, OUTPUTS, "prod", session, airflow=False)
    assert first.uploaded and not first.unchanged
    assert second.uploaded == [] and sorted(second.unchanged) == sorted(first.uploaded)
    assert second.mwaa_release == first.mwaa_release  # no new object versions: MWAA does not restart


def test_a_new_commit_is_a_new_release_and_the_old_one_stays(aws, tmp_path):
    session, _ = aws
    s3 = session.client("s3")
    old = d.deploy(make_dist(tmp_path / "a", "1111111"), OUTPUTS, "prod", session, airflow=False)
    new = d.deploy(make_dist(tmp_path / "b", "2222222"), OUTPUTS, "prod", session, airflow=False)
    assert new.release_uri.endswith("/releases/2222222") and _keys(s3, "code/releases/1111111/")
    # identical wheel and requirements: unchanged; the startup script names the new release
    assert new.mwaa_release["requirements_s3_object_version"] == old.mwaa_release["requirements_s3_object_version"]
    assert new.mwaa_release["startup_script_s3_object_version"] != old.mwaa_release["startup_script_s3_object_version"]


def test_a_dist_changed_after_packaging_is_refused(aws, tmp_path):
    session, _ = aws
    dist = make_dist(tmp_path)
    (dist / "jobs" / "ingest.py").write_text("print('edited by hand')\n")
    with pytest.raises(d.DeployError, match="jobs/ingest.py: differs from manifest.json"):
        d.deploy(dist, OUTPUTS, "prod", session, airflow=False)
    assert not _keys(session.client("s3"), "code/")


def test_connections_that_disagree_with_terraform_fail_the_deploy(aws, tmp_path):
    session, _ = aws
    session.client("secretsmanager").put_secret_value(SecretId="batchml/prod/airflow/variables/batchml_emr_application_id",
                                                      SecretString="00fstale")
    with pytest.raises(d.DeployError, match="batchml_emr_application_id is '00fstale'"):
        d.deploy(make_dist(tmp_path), OUTPUTS, "prod", session, airflow=False)


def test_render_conf_needs_every_output_and_an_mlflow_uri():
    template = yaml.safe_load((REPO / "conf" / "prod" / "batchml.yaml").read_text())
    with pytest.raises(d.DeployError, match="terraform outputs missing: emr_log_uri"):
        d.render_conf(template, {k: v for k, v in OUTPUTS.items() if k != "emr_log_uri"}, COMMIT)
    no_server = {**OUTPUTS, "mlflow_tracking_uri": None, "mlflow_pipeline_secret_name": None}
    with pytest.raises(d.DeployError, match="pass --mlflow-tracking-uri"):
        d.render_conf(template, no_server, COMMIT)
    conf = d.render_conf(template, no_server, COMMIT, mlflow_tracking_uri="https://mlflow.managed.example.com")
    assert conf["mlflow"]["tracking_uri"] == "https://mlflow.managed.example.com"
    assert "MLFLOW_TRACKING_PASSWORD" not in json.dumps(conf)
    assert conf["spark"] == template["spark"], "settings Terraform does not know come from the template"


def test_cli_deploys_from_a_saved_terraform_output(aws, tmp_path, capsys):
    dist = make_dist(tmp_path)
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({k: {"value": v, "type": "string", "sensitive": False} for k, v in OUTPUTS.items()}))
    tf_dir = tmp_path / "terraform"
    (tf_dir / "envs").mkdir(parents=True)
    argv = ["--env", "prod", "--dist", str(dist), "--outputs", str(outputs), "--terraform-dir", str(tf_dir), "--skip-airflow"]
    assert d.main(argv) == 0
    out = capsys.readouterr().out
    assert f"release s3://{ART}/code/releases/{COMMIT}:" in out and "0 unchanged" in out
    assert "mwaa_release" in (tf_dir / "envs" / "prod.release.tfvars.json").read_text()
    assert d.main(argv) == 0
    assert " 0 uploaded" in capsys.readouterr().out


def test_pool_name_is_the_operators_pool():
    import re

    # read, not imported: importing the operators module loads Airflow (seconds) for one constant
    source = (REPO / "src" / "batchml" / "orchestration" / "operators.py").read_text()
    assert re.search(r'^SPARK_POOL = "([^"]+)"', source, re.M).group(1) == d.SPARK_POOL



def test_the_fake_outputs_are_real_terraform_outputs():
    """The outputs these tests feed `make deploy` exist in infra/terraform/outputs.tf under those names."""
    import re

    declared = set(re.findall(r'^output "([a-z_]+)"', (REPO / "infra" / "terraform" / "outputs.tf").read_text(), re.M))
    assert set(OUTPUTS) <= declared, set(OUTPUTS) - declared
