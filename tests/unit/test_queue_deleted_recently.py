"""A queue made again within a minute of a destroy: AWS answers CreateQueue with
QueueDeletedRecently for 60 s after a DeleteQueue of the name, moto never does. Here the
answer is made before the call is sent (the factory's interceptors, as the crash sweep
makes its faults), and runbook waits it out instead of failing step event-bus."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from runbook.aws import naming
from runbook.aws.api import Api
from runbook.aws.clients import ClientFactory
from runbook.resources.queue import DELETED_RECENTLY, Queue, QueueSpec, queue_arn
from tests.conftest import REGION

NAME = "matbakh-staging-user-signup"
SPEC = QueueSpec(NAME, {"Name": NAME, naming.ENV_TAG: "staging", naming.STEP_TAG: "event-bus",
                        naming.CREATED_TAG: naming.CREATED}, "network.name",
                 arn=queue_arn(REGION, "123456789012", NAME), visibility_timeout=180)


def refusing(times: int):
    """An interceptor that answers the first `times` CreateQueue calls as AWS does within
    60 s of a DeleteQueue of the name."""
    refused = []

    def intercept(service: str, operation: str, write: bool) -> None:
        if operation == "CreateQueue" and len(refused) < times:
            refused.append(operation)
            raise ClientError({"Error": {"Code": "AWS.SimpleQueueService.QueueDeletedRecently",
                                         "Message": "You must wait 60 seconds after deleting "
                                                    "a queue before you can create another "
                                                    "with the same name."},
                               "ResponseMetadata": {"HTTPStatusCode": 400}}, operation)

    return intercept, refused


def test_a_queue_deleted_a_moment_ago_is_made_once_the_minute_has_passed():
    intercept, refused = refusing(3)
    slept = []
    with mock_aws():
        api = Api(ClientFactory(REGION, interceptors=[intercept]), sleep=slept.append)

        found = Queue().create(api, SPEC)

        urls = boto3.client("sqs", region_name=REGION).list_queues()["QueueUrls"]
    assert [u.rsplit("/", 1)[1] for u in urls] == [NAME] and found.id == urls[0]
    assert refused == ["CreateQueue"] * 3
    assert slept == [5, 10, 20]


def test_a_refusal_that_outlasts_the_minute_fails_with_it():
    intercept, refused = refusing(100)
    slept = []
    with mock_aws():
        api = Api(ClientFactory(REGION, interceptors=[intercept]), sleep=slept.append)

        with pytest.raises(ClientError, match="QueueDeletedRecently"):
            Queue().create(api, SPEC)

    assert len(refused) == DELETED_RECENTLY.attempts
    assert sum(slept) == 95
