"""The sandbox runs SQS event source mappings: given a region it starts Lambda's poller
(runbook.sandbox.sqs) after moto, runs a mapped function's handler through the local
invoker, and stops the poller when it closes. The function here is process_user_signup,
sent a message it refuses as malformed (a detail without the Cognito id), so every batch
reports it failed and the message must end in the DLQ after maxReceiveCount receives,
never lost and never fired by moto itself."""

from __future__ import annotations

import json
import threading

import pytest

from runbook.aws.clients import ClientFactory
from runbook.functions import package
from runbook.functions.invoke import sandbox_invoker
from runbook.functions.registry import FUNCTION_TAG
from runbook.output.progress import Progress
from runbook.sandbox import sqs as sandbox_sqs
from runbook.sandbox.stack import SANDBOX_CREDENTIALS, Sandbox
from tests.conftest import REGION

pytestmark = pytest.mark.slow

FUNCTION = "matbakh-process-user-signup"


def test_the_sandbox_polls_mapped_queues_through_the_local_invoker_and_stops_the_poller():
    with Sandbox(Progress(quiet=True), region=REGION, invoker=sandbox_invoker) as box:
        assert box.poller is not None and box.poller.running
        assert sandbox_sqs.SIMULATED_FIRING in box.simulated
        # While the account holds no mapping, polling asks moto nothing (both pollers
        # share these clients).
        assert box.poller.drain(30)
        assert box.poller.aws.total("read") == box.poller.aws.total("write") == 0
        aws = ClientFactory(REGION, endpoint_url=box.aws_url, credentials=SANDBOX_CREDENTIALS)
        sqs, lam = aws.client("sqs"), aws.client("lambda")
        dlq = sqs.create_queue(QueueName="signups-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])[
            "Attributes"]["QueueArn"]
        queue = sqs.create_queue(QueueName="signups", Attributes={
            "VisibilityTimeout": "180", "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2})})["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])[
            "Attributes"]["QueueArn"]
        role = aws.client("iam").create_role(RoleName="signup", AssumeRolePolicyDocument="{}")
        lam.create_function(FunctionName=FUNCTION, Runtime="python3.11", Timeout=30,
                            Role=role["Role"]["Arn"], Handler="handler.handler",
                            Code={"ZipFile": package.build_function("process_user_signup").data},
                            Tags={FUNCTION_TAG: "process_user_signup"})
        lam.create_event_source_mapping(EventSourceArn=queue_arn, FunctionName=FUNCTION,
                                        BatchSize=10,
                                        FunctionResponseTypes=["ReportBatchItemFailures"])
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"detail": {}}))

        assert box.poller.drain(60)
        assert box.poller.aws.total("read") > 0
        moved = sqs.receive_message(QueueUrl=dlq)["Messages"]
        assert [m["Body"] for m in moved] == [json.dumps({"detail": {}})]
        assert len(box.poller.failures) == 2  # one per receive before the redrive
        assert {f.function.rsplit(":", 1)[1] for f in box.poller.failures} == {FUNCTION}
        # The handler ran: the local invoker wrote both invocations to the log group.
        logs = aws.client("logs")
        group = f"/aws/lambda/{FUNCTION}"
        starts = [e["message"] for s in logs.describe_log_streams(logGroupName=group)[
            "logStreams"] for e in logs.get_log_events(
                logGroupName=group, logStreamName=s["logStreamName"])["events"]
            if e["message"].startswith("START RequestId: ")]
        assert len(starts) == 2
        poller = box.poller
    assert box.poller is None and not poller.running
    assert "runbook-sqs-poller" not in [t.name for t in threading.enumerate()]
