"""Custom checkov check CKV_BATCHML_1: every S3 bucket policy denies non-TLS requests.

checkov has no built-in TLS-only check for aws_s3_bucket_policy (CKV_AWS_379 only
looks at public ACLs), so this repository ships one. It passes when the policy has
a Deny statement on aws:SecureTransport = false. That every bucket HAS a policy is
asserted by tests/infra/test_terraform.py.
"""

from __future__ import annotations

import json
import re
from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck


def _statements(policy: Any) -> list[dict[str, Any]]:
    if isinstance(policy, list):
        policy = policy[0] if policy else {}
    if isinstance(policy, str):
        try:
            policy = json.loads(policy)
        except ValueError:
            return []
    if not isinstance(policy, dict):
        return []
    statements = policy.get("Statement") or policy.get("statement") or []
    if isinstance(statements, dict):
        statements = [statements]
    return [s for s in statements if isinstance(s, dict)]


def _denies_insecure_transport(statement: dict[str, Any]) -> bool:
    effect = statement.get("Effect", statement.get("effect"))
    if isinstance(effect, list):
        effect = effect[0] if effect else None
    if effect != "Deny":
        return False
    # JSON form: {"Condition": {"Bool": {"aws:SecureTransport": "false"}}}
    condition = statement.get("Condition")
    if isinstance(condition, dict):
        value = (condition.get("Bool") or {}).get("aws:SecureTransport")
        if isinstance(value, list):
            value = value[0] if value else None
        return str(value).lower() == "false"
    # aws_iam_policy_document form: condition { test = "Bool" variable = ... values = ["false"] }
    conditions = statement.get("condition") or []
    if isinstance(conditions, dict):
        conditions = [conditions]
    for cond in conditions:
        test, variable, values = cond.get("test"), cond.get("variable"), cond.get("values")
        test = test[0] if isinstance(test, list) else test
        variable = variable[0] if isinstance(variable, list) else variable
        flat = json.dumps(values).lower()
        if test == "Bool" and variable == "aws:SecureTransport" and "false" in flat:
            return True
    return False


class S3BucketPolicyDeniesInsecureTransport(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Ensure the S3 bucket policy denies requests that do not use TLS (aws:SecureTransport)",
            id="CKV_BATCHML_1",
            categories=(CheckCategories.NETWORKING,),
            supported_resources=("aws_s3_bucket_policy",),
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        policy = conf.get("policy")
        for statement in _statements(policy):
            if _denies_insecure_transport(statement):
                return CheckResult.PASSED
        # checkov sometimes cannot evaluate jsonencode() with interpolated ARNs and keeps
        # the expression as text; fall back to a per-statement textual check.
        text = policy[0] if isinstance(policy, list) and policy else policy
        if isinstance(text, str) and text.startswith("jsonencode("):
            for chunk in re.split(r"['\"]Sid['\"]\s*:", text)[1:]:
                if re.search(r"['\"]Effect['\"]\s*:\s*['\"]Deny['\"]", chunk) and re.search(
                    r"['\"]aws:SecureTransport['\"]\s*:\s*['\"]false['\"]", chunk, re.IGNORECASE
                ):
                    return CheckResult.PASSED
        return CheckResult.FAILED


check = S3BucketPolicyDeniesInsecureTransport()
