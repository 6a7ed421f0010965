"""How a Lambda Invoke is counted, and how fix-tables reports a db_migrate that failed,
on a stubbed Lambda client (botocore's Stubber), as a live run sees them."""

from __future__ import annotations

import io
import json

import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from runbook.functions import db_migrate as migrate_function
from runbook.functions.invoke import for_steps
from runbook.aws.clients import ClientFactory
from runbook.engine import StepContext
from runbook.errors import StepFailed
from runbook.output.progress import Progress
from runbook.lambda_runtime import migrate_event
from runbook.lambda_runtime.schemas import Schemas
from tests.conftest import REGION

FUNCTION = "matbakh-cognito-db-migrate"


def body(data) -> StreamingBody:
    raw = json.dumps(data).encode()
    return StreamingBody(io.BytesIO(raw), len(raw))


def invoke_once(payload, response: dict | None = None):
    """Invoke through a fresh factory with a stubbed answer; its counts and journal."""
    aws = ClientFactory(REGION)
    lam = aws.client("lambda")
    with Stubber(lam) as stub, aws.scoped("step") as counts:
        stub.add_response("invoke", response or {"StatusCode": 200, "Payload": body({})})
        lam.invoke(FunctionName=FUNCTION, Payload=payload)
    return dict(counts), aws.journal.entries


def test_an_invoke_asking_for_db_migrates_read_action_counts_as_a_read():
    event = migrate_event.build(migrate_event.READ, [], {}, Schemas())
    counts, journal = invoke_once(json.dumps(event).encode())
    assert counts == {"read": 1, "write": 0} and journal == []


@pytest.mark.parametrize("payload", [
    json.dumps(migrate_event.build(migrate_event.APPLY, [], {}, Schemas())).encode(),
    json.dumps({"triggerSource": "PostConfirmation_ConfirmSignUp"}).encode(),
    b"not json",
], ids=["apply action", "another function's event", "not JSON"])
def test_every_other_invoke_counts_as_a_write_and_is_journaled(payload):
    counts, journal = invoke_once(payload)
    assert counts == {"read": 0, "write": 1}
    assert [entry["call"] for entry in journal] == ["lambda:Invoke"]


def test_a_function_error_is_a_step_failure_naming_the_function_and_the_error():
    aws = ClientFactory(REGION)
    ctx = StepContext(config=None, aws=aws, progress=Progress(quiet=True),
                      upstream=lambda name: {},
                      invoker=for_steps(aws, dry_run=False))
    event = migrate_event.build(migrate_event.APPLY, [], {}, Schemas())
    with Stubber(aws.client("lambda")) as stub:
        stub.add_response(
            "invoke",
            {"StatusCode": 200, "FunctionError": "Unhandled",
             "Payload": body({"errorType": "MigrationFailed",
                              "errorMessage": "migration 0004_x failed and was rolled back: "
                                              "PostgreSQL error 42883: no such function"})},
            {"FunctionName": FUNCTION, "Payload": json.dumps(event).encode(), "LogType": "Tail"})
        with pytest.raises(StepFailed) as failed:
            migrate_function.call(ctx, FUNCTION, event)
    assert str(failed.value) == (
        f"step 'fix-tables' failed on lambda:function {FUNCTION}: MigrationFailed: migration "
        "0004_x failed and was rolled back: PostgreSQL error 42883: no such function")


def test_an_answer_that_is_not_an_object_is_a_step_failure():
    aws = ClientFactory(REGION)
    ctx = StepContext(config=None, aws=aws, progress=Progress(quiet=True),
                      upstream=lambda name: {},
                      invoker=for_steps(aws, dry_run=False))
    with Stubber(aws.client("lambda")) as stub:
        stub.add_response("invoke", {"StatusCode": 200, "Payload": body("Simple Lambda OK")})
        with pytest.raises(StepFailed, match="it answered str, which is not how this "
                                             "runbook's db_migrate answers"):
            migrate_function.call(ctx, FUNCTION, {"action": "read"})
