"""Alerts: ``alert(config, event)`` logs the event, appends it to ``{home}/alerts/alerts.jsonl``
and sends it to every configured sink (``alerts.sinks``: webhook POST of the JSON, email, or an SNS
topic, which is how prod reaches people: the topic's subscribers, next to CloudWatch alarms and
EventBridge rules that publish to the same topic).

An alert is information, not a failure: a sink that cannot be reached is logged and skipped,
so one broken webhook never stops the run or the other sinks.
"""

from __future__ import annotations

import json
import logging
import smtplib
import urllib.request
from email.message import EmailMessage
from pathlib import Path

from batchml.config import Config

log = logging.getLogger(__name__)


class SinkFailed(RuntimeError):
    """A sink was reached but refused the alert (an HTTP error status, an AWS error)."""


def alert(config: Config, event: dict) -> list[str]:
    """Deliver ``event`` (JSON-serialisable; ``kind`` and ``message`` recommended). Returns the sinks reached."""
    body = json.dumps(event, sort_keys=True, default=str)
    log.warning("ALERT %s: %s", event.get("kind", "alert"), event.get("message", body))
    folder = Path(config.home) / "alerts"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "alerts.jsonl", "a", encoding="utf-8") as out:
        out.write(body + "\n")
    reached = ["log", "jsonl"]
    for sink in config.alerts.sinks:
        try:
            SENDERS[sink.kind](sink, event, body)
            reached.append(sink.kind)
        except (OSError, SinkFailed) as exc:  # unreachable or refusing (smtplib's and urllib's errors are OSErrors)
            log.error("alert sink %s failed: %s", sink.kind, exc)
    return reached


def _webhook(sink, event: dict, body: str) -> None:
    request = urllib.request.Request(sink.url, data=body.encode("utf-8"), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=sink.timeout_seconds) as response:
        if response.status >= 300:
            raise SinkFailed(f"webhook {sink.url} answered HTTP {response.status}")


def _email(sink, event: dict, body: str) -> None:
    msg = EmailMessage()
    msg["Subject"] = f"[batchml] {event.get('kind', 'alert')}: {event.get('message', '')}"[:200]
    msg["From"], msg["To"] = sink.sender, ", ".join(sink.recipients)
    msg.set_content(json.dumps(event, indent=2, sort_keys=True, default=str))
    with smtplib.SMTP(sink.smtp_host, sink.smtp_port, timeout=sink.timeout_seconds) as smtp:
        smtp.send_message(msg)


def _sns(sink, event: dict, body: str) -> None:
    """Publish the event JSON to the topic; the subject is what an e-mail subscriber sees first."""
    import boto3
    from botocore.config import Config as BotoConfig
    from botocore.exceptions import BotoCoreError, ClientError

    region = sink.topic_arn.split(":")[3]
    timeouts = BotoConfig(connect_timeout=sink.timeout_seconds, read_timeout=sink.timeout_seconds,
                          retries={"max_attempts": 2})
    client = boto3.client("sns", region_name=region, config=timeouts)
    subject = f"[batchml] {event.get('kind', 'alert')}: {event.get('message', '')}"
    # SNS subjects: at most 100 printable ASCII characters, no line breaks
    subject = "".join(c if " " <= c <= "~" else " " for c in subject)[:100]
    try:
        client.publish(TopicArn=sink.topic_arn, Subject=subject, Message=body, MessageAttributes={
            "kind": {"DataType": "String", "StringValue": str(event.get("kind", "alert"))}})
    except (BotoCoreError, ClientError) as exc:
        raise SinkFailed(f"{type(exc).__name__}: {exc}") from exc


SENDERS = {"webhook": _webhook, "email": _email, "sns": _sns}
