"""The calls the event path's resources make (runbook.resources.event_bus, queue,
alarm): each classified as read or write as it is (a read counted as a write would fail
the verify pass's 0 writes; a write counted as a read would hide one), and SQS's "no
such queue" recognised as not found."""

from __future__ import annotations

import pytest

from runbook.aws.api import not_found
from runbook.aws.clients import NOT_RETRIED_WHEN_UNCERTAIN, is_write

READS = ["DescribeEventBus", "DescribeRule", "ListTargetsByRule", "ListTagsForResource",
         "GetQueueUrl", "GetQueueAttributes", "ListQueueTags", "DescribeAlarms"]
WRITES = ["CreateEventBus", "PutRule", "PutTargets", "TagResource", "CreateQueue",
          "SetQueueAttributes", "TagQueue", "PutMetricAlarm"]


@pytest.mark.parametrize("operation", READS)
def test_the_reads_are_reads(operation):
    assert is_write(operation) is False


@pytest.mark.parametrize("operation", WRITES)
def test_the_writes_are_writes(operation):
    assert is_write(operation) is True


def test_no_event_path_create_is_held_back_from_retries():
    """CreateEventBus refuses a second bus of a name, CreateQueue answers with the queue
    that has the same name and attributes, PutRule, PutTargets and PutMetricAlarm are
    upserts: a retried request makes nothing twice, so botocore may retry them."""
    held = {op for ops in NOT_RETRIED_WHEN_UNCERTAIN.values() for op in ops}
    assert held.isdisjoint(WRITES)
    assert not {"events", "sqs", "cloudwatch"} & set(NOT_RETRIED_WHEN_UNCERTAIN)


class Answer(Exception):
    def __init__(self, code):
        self.response = {"Error": {"Code": code, "Message": "m"}}


@pytest.mark.parametrize("code, missing", [
    ("AWS.SimpleQueueService.NonExistentQueue", True),   # query-compatible code
    ("QueueDoesNotExist", True),
    ("ResourceNotFoundException", True),                  # events
    ("AWS.SimpleQueueService.QueueDeletedRecently", False),
    ("AccessDenied", False),
])
def test_sqs_no_such_queue_is_not_found(code, missing):
    assert not_found(Answer(code)) is missing
