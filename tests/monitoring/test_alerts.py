"""Alert sinks against real servers on loopback: an HTTP server for the webhook, an SMTP server for email."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from batchml.alerts import alert
from batchml.monitoring.spec import AlertsConfig, Sink
from tests.servers import free_port, moto_server


@pytest.fixture
def webhook():
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"type": self.headers["Content-Type"], "event": json.loads(body)})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hooks/batchml", received
    server.shutdown()
    server.server_close()


@pytest.fixture
def smtp():
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Message

    messages = []

    class Keep(Message):
        def handle_message(self, message):
            messages.append(message)

    port = free_port()  # aiosmtpd's start() probes the port it was given, so 0 will not do
    controller = Controller(Keep(), hostname="127.0.0.1", port=port)
    controller.start()
    yield "127.0.0.1", port, messages
    controller.stop()


def with_sinks(config, tmp_path, *sinks):
    return config.model_copy(update={"home": str(tmp_path), "alerts": AlertsConfig(sinks=list(sinks))})


EVENT = {"kind": "monitoring", "dataset": "card_transactions", "run_date": "2024-03-10",
         "message": "card_transactions 2024-03-10: data_drift; retraining requested", "reasons": [{"psi": 0.31}]}


def test_webhook_and_email_receive_the_event(config, tmp_path, webhook, smtp):
    url, received = webhook
    host, port, messages = smtp
    cfg = with_sinks(config, tmp_path, Sink(kind="webhook", url=url),
                     Sink(kind="email", smtp_host=host, smtp_port=port, sender="batchml@example.org",
                          recipients=["risk@example.org", "ml@example.org"]))
    assert alert(cfg, EVENT) == ["log", "jsonl", "webhook", "email"]
    assert received == [{"type": "application/json", "event": EVENT}]
    assert len(messages) == 1
    mail = messages[0]
    assert mail["To"] == "risk@example.org, ml@example.org" and "data_drift" in mail["Subject"]
    assert json.loads(mail.get_payload()) == EVENT
    lines = (tmp_path / "alerts" / "alerts.jsonl").read_text().splitlines()
    assert [json.loads(x) for x in lines] == [EVENT]


def test_a_dead_sink_does_not_stop_the_others(config, tmp_path, webhook, caplog):
    url, received = webhook
    dead = free_port()  # nobody listens there
    cfg = with_sinks(config, tmp_path, Sink(kind="webhook", url=f"http://127.0.0.1:{dead}/x", timeout_seconds=2),
                     Sink(kind="webhook", url=url))
    assert alert(cfg, EVENT) == ["log", "jsonl", "webhook"]
    assert len(received) == 1
    assert "alert sink webhook failed" in caplog.text


@pytest.fixture
def sns_topic(monkeypatch):
    """A topic on moto's server (loopback) with an SQS queue subscribed, as an e-mail subscriber would be."""
    import boto3

    with moto_server(monkeypatch) as endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        sns, sqs = (boto3.client(name, region_name="eu-west-1") for name in ("sns", "sqs"))
        topic = sns.create_topic(Name="batchml-prod-pipeline-alerts")["TopicArn"]
        queue = sqs.create_queue(QueueName="oncall")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
        yield topic, sqs, queue


def test_sns_sink_publishes_the_event(config, tmp_path, sns_topic):
    topic, sqs, queue = sns_topic
    cfg = with_sinks(config, tmp_path, Sink(kind="sns", topic_arn=topic))
    assert alert(cfg, EVENT) == ["log", "jsonl", "sns"]
    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=2)["Messages"]
    assert len(messages) == 1
    envelope = json.loads(messages[0]["Body"])  # what SNS delivers to a subscriber
    assert envelope["TopicArn"] == topic
    assert json.loads(envelope["Message"]) == EVENT
    assert envelope["Subject"].startswith("[batchml] monitoring: card_transactions 2024-03-10: data_drift")
    assert len(envelope["Subject"]) <= 100
    assert envelope["MessageAttributes"]["kind"]["Value"] == "monitoring"


def test_sns_sink_to_a_missing_topic_is_logged_not_raised(config, tmp_path, sns_topic, caplog):
    topic, _, _ = sns_topic
    missing = topic.rsplit(":", 1)[0] + ":no-such-topic"
    cfg = with_sinks(config, tmp_path, Sink(kind="sns", topic_arn=missing))
    assert alert(cfg, EVENT) == ["log", "jsonl"]
    assert "alert sink sns failed" in caplog.text and "NotFound" in caplog.text


def test_a_sink_without_its_settings_is_a_config_error():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="sns sink needs topic_arn"):
        Sink(kind="sns")
    with pytest.raises(ValidationError, match="topic_arn"):
        Sink(kind="sns", topic_arn="batchml-alerts")
    with pytest.raises(ValidationError, match="webhook sink needs url"):
        Sink(kind="webhook")
