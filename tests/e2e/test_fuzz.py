"""The API against its own OpenAPI document: schemathesis generates requests from
openapi.json and sends them, with a valid token, through the stack's gateway.

No answer may be a 5xx, and every answer must be one the document describes:
its status, content type, headers and body schema (for errors, one of the
codes listed for that status); a body the document forbids must be refused.
Bounded: FUZZ_EXAMPLES examples per operation (a few in `make test`; `make
fuzz` runs many more).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from local.issuer import mint_token
from local.stack import Stack

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "8"))
# Cleanup is for Cloud Scheduler only (IAM): fuzzing it would purge the other tests' data.
schema = schemathesis.openapi.from_path(ROOT / "openapi.json").exclude(path="/pixme-cleanup")


@pytest.fixture(scope="module")
def fuzz_token(stack: Stack) -> str:
    assert stack.issuer_url and stack.gateway_url
    return mint_token(stack.issuer_url, f"fuzz-{uuid.uuid4().hex[:12]}")


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same examples every run: a failure here is reproducible
    suppress_health_check=list(HealthCheck),
)
def test_every_answer_is_documented_and_none_is_a_server_error(
    case: schemathesis.Case, stack: Stack, fuzz_token: str
) -> None:
    assert stack.gateway_url
    headers = {"Authorization": f"Bearer {fuzz_token}"}
    # Every check but "a schema-valid body is accepted": the document cannot state the
    # deployment's own rules (the operator's model aliases, PIXME_MAX_TEXT_CHARS), so a
    # body it allows may rightly be a 400, with its code.
    case.call_and_validate(
        base_url=stack.gateway_url, headers=headers, timeout=120, excluded_checks=[positive_data_acceptance]
    )
