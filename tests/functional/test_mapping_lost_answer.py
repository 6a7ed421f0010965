"""A CreateEventSourceMapping whose answer is lost is not sent again by botocore
(runbook.aws.clients.NOT_RETRIED_WHEN_UNCERTAIN): AWS would refuse a second mapping of
the function and queue, moto 5.2.5 makes one, and the next run's plan then stops at "2
mappings feed ...". The crash sweep found it (bench/crash_sweep.py, response-lost-retried
at the mapping's create). Against the moto server, as the sweep runs: the request is
delivered, then the connection drops before the answer."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from botocore.exceptions import ConnectionClosedError

from runbook.aws.clients import ClientFactory
from runbook.sandbox.stack import SANDBOX_CREDENTIALS
from tests.conftest import REGION

TRUST = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                 "Principal": {"Service": "lambda.amazonaws.com"}}]}


def _zip() -> bytes:
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return None\n")
    return data.getvalue()


def _function_and_queue(aws: ClientFactory) -> tuple[str, str]:
    role = aws.client("iam").create_role(RoleName="consumer-role",
                                         AssumeRolePolicyDocument=json.dumps(TRUST))
    aws.client("lambda").create_function(
        FunctionName="consumer", Runtime="python3.11", Role=role["Role"]["Arn"],
        Handler="handler.handler", Code={"ZipFile": _zip()})
    url = aws.client("sqs").create_queue(QueueName="signup")["QueueUrl"]
    arn = aws.client("sqs").get_queue_attributes(
        QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return "consumer", arn


def test_a_lost_answer_to_create_event_source_mapping_is_not_sent_again(moto_endpoint):
    from botocore.httpsession import URLLib3Session

    aws = ClientFactory(REGION, endpoint_url=moto_endpoint, credentials=SANDBOX_CREDENTIALS)
    function, queue = _function_and_queue(aws)
    lam = aws.client("lambda")
    sent = []

    def deliver_then_drop(request, **_):
        sent.append(request.url)
        URLLib3Session().send(request)
        raise ConnectionClosedError(endpoint_url=request.url)

    lam.meta.events.register("before-send.lambda.CreateEventSourceMapping", deliver_then_drop)

    with pytest.raises(ConnectionClosedError):
        lam.create_event_source_mapping(FunctionName=function, EventSourceArn=queue,
                                        BatchSize=10)

    assert len(sent) == 1
    mappings = lam.list_event_source_mappings(FunctionName=function)["EventSourceMappings"]
    assert len(mappings) == 1
