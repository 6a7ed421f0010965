"""The sandbox's SQS poller (runbook.sandbox.sqs) against a moto server: a queue with a
redrive policy to a DLQ, a function record and an event source mapping, as steps
event-bus and deploy-process-user-signup make them. The function is a small Python
callable in place of the LocalInvoker (the poller's `invoke` seam): it answers as a
handler would, and the poller must read the answer as Lambda does (AWS-FACTS A)."""

from __future__ import annotations

import io
import json
import threading
import zipfile
from dataclasses import dataclass, field

import boto3
import pytest

from runbook.aws.clients import ClientFactory
from runbook.functions.invoke import Invocation
from runbook.sandbox import sqs as sandbox_sqs
from runbook.sandbox.stack import SANDBOX_CREDENTIALS
from tests.conftest import REGION, REPO

SQS_EVENT = REPO / "tests" / "fixtures" / "events" / "sqs_user_registered_batch.json"
MAX_RECEIVE_COUNT = 5
POISON = "poison"


@dataclass
class Function:
    """What runs for the mapping: `answer(records)` gives the handler's return value,
    or raises. Every event it gets is kept."""

    answer: object = None
    events: list[dict] = field(default_factory=list)
    running: int = 0
    most_running: int = 0

    def __call__(self, function: str, event: dict) -> Invocation:
        self.events.append(event)
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            if isinstance(self.answer, BaseException):
                raise self.answer
            if isinstance(self.answer, Invocation):
                return self.answer
            value = self.answer(event["Records"]) if callable(self.answer) else self.answer
            return Invocation(function, "request-id", result=value)
        finally:
            self.running -= 1


def fails_poison(records: list[dict]) -> dict:
    """A handler that stores what it can and reports the poison messages."""
    return {"batchItemFailures": [{"itemIdentifier": r["messageId"]}
                                  for r in records if r["body"] == POISON]}


@dataclass
class Account:
    sqs: object
    lam: object
    queue_url: str
    queue_arn: str
    dlq_url: str
    function_arn: str

    def send(self, *bodies: str) -> list[str]:
        return [self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=b)["MessageId"]
                for b in bodies]

    def count(self, url: str) -> int:
        """The messages on the queue, visible or not (without receiving them)."""
        found = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
        return sum(int(n) for n in found["Attributes"].values())

    def bodies(self, url: str) -> list[str]:
        """The bodies on the queue; receiving them counts as a receive."""
        found = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                         WaitTimeSeconds=0, VisibilityTimeout=0)
        return sorted(m["Body"] for m in found.get("Messages", []))

    def map(self, *, enabled: bool = True, report: bool = True, queue_arn: str | None = None):
        return self.lam.create_event_source_mapping(
            EventSourceArn=queue_arn or self.queue_arn, FunctionName=self.function_arn,
            BatchSize=10, Enabled=enabled, ScalingConfig={"MaximumConcurrency": 2},
            FunctionResponseTypes=["ReportBatchItemFailures"] if report else [])

    def queue(self, name: str, **attributes) -> tuple[str, str]:
        url = self.sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
            "Attributes"]["QueueArn"]
        return url, arn


@pytest.fixture
def account(moto_endpoint) -> Account:
    sandbox_sqs.install()
    session = boto3.Session(region_name=REGION, **SANDBOX_CREDENTIALS)
    sqs = session.client("sqs", endpoint_url=moto_endpoint)
    lam = session.client("lambda", endpoint_url=moto_endpoint)
    iam = session.client("iam", endpoint_url=moto_endpoint)
    made = Account(sqs, lam, "", "", "", "")
    made.dlq_url, dlq_arn = made.queue("signups-dlq")
    made.queue_url, made.queue_arn = made.queue("signups", VisibilityTimeout="30",
                                                RedrivePolicy=json.dumps({
                                                    "deadLetterTargetArn": dlq_arn,
                                                    "maxReceiveCount": MAX_RECEIVE_COUNT}))
    role = iam.create_role(RoleName="process-user-signup",
                           AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return None\n")
    made.function_arn = lam.create_function(
        FunctionName="process-user-signup", Runtime="python3.11", Role=role,
        Handler="handler.handler", Code={"ZipFile": code.getvalue()})["FunctionArn"]
    return made


def poller(moto_endpoint, function: Function) -> sandbox_sqs.Poller:
    aws = ClientFactory(REGION, endpoint_url=moto_endpoint, credentials=SANDBOX_CREDENTIALS)
    return sandbox_sqs.Poller(aws, function, interval_s=0.05, retry_delay_s=0)


def poll_until_idle(p: sandbox_sqs.Poller, limit: int = 20) -> int:
    """Poll in this thread until a poll finds nothing; the number of busy polls."""
    for busy in range(limit):
        if not p.poll_once():
            return busy
    raise AssertionError(f"still busy after {limit} polls")


# -- (a) moto no longer fires the mapping inside SendMessage ----------------------------

def test_send_message_leaves_a_mapped_message_to_the_poller(account, moto_endpoint):
    account.map()
    account.send("hello")
    function = Function()
    poll_until_idle(poller(moto_endpoint, function))
    [event] = function.events
    assert event["Records"][0]["attributes"]["ApproximateReceiveCount"] == "1"
    assert account.bodies(account.queue_url) == []


def test_the_mapping_still_reads_back_as_aws_shows_it(account):
    made = account.map()
    [listed] = account.lam.list_event_source_mappings()["EventSourceMappings"]
    got = account.lam.get_event_source_mapping(UUID=made["UUID"])
    for mapping in (listed, got):
        assert mapping["State"] == "Enabled"
        assert mapping["EventSourceArn"] == account.queue_arn
        assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert mapping["ScalingConfig"] == {"MaximumConcurrency": 2}


def test_install_is_idempotent():
    sandbox_sqs.install()
    assert sandbox_sqs.install() is False


# -- (b) partial batch failure and the DLQ ----------------------------------------------

def test_a_good_message_is_deleted_and_a_poison_one_ends_in_the_dlq(account, moto_endpoint):
    account.map()
    good, poison = account.send("good", POISON)
    function = Function(answer=fails_poison)
    p = poller(moto_endpoint, function)

    p.poll_once()
    [first] = function.events
    assert sorted(r["messageId"] for r in first["Records"]) == sorted([good, poison])
    assert account.count(account.queue_url) == 1  # the good one was deleted

    poll_until_idle(p)
    counts = [r["attributes"]["ApproximateReceiveCount"]
              for e in function.events for r in e["Records"] if r["messageId"] == poison]
    assert counts == [str(n) for n in range(1, MAX_RECEIVE_COUNT + 1)]
    assert account.bodies(account.queue_url) == []
    assert account.bodies(account.dlq_url) == [POISON]
    assert p.deleted == 1
    assert {(f.reason, f.message_ids) for f in p.failures} == {
        ("batch item failures", (poison,))}


# -- (c) how the answer is read ----------------------------------------------------------

def everything_deleted(account) -> bool:
    return account.bodies(account.queue_url) == []


# answer -> the reason the poller records for the whole batch.
WHOLE_BATCH_RETRIED = {
    "unknown itemIdentifier": ({"batchItemFailures": [{"itemIdentifier": "not-in-the-batch"}]},
                               "invalid response"),
    "empty itemIdentifier": ({"batchItemFailures": [{"itemIdentifier": ""}]},
                             "invalid response"),
    "null itemIdentifier": ({"batchItemFailures": [{"itemIdentifier": None}]},
                            "invalid response"),
    "misspelled item key": ({"batchItemFailures": [{"itemId": "x"}]}, "invalid response"),
    "list not a list": ({"batchItemFailures": "all"}, "invalid response"),
    "answer not an object": ("failed", "invalid response"),
    "raised error": (RuntimeError("the database is down"), "function error"),
    "function error": (Invocation("process-user-signup", "r", error_type="KeyError",
                                  error_message="'detail'"), "function error"),
}


@pytest.mark.parametrize("answer,reason", WHOLE_BATCH_RETRIED.values(),
                         ids=WHOLE_BATCH_RETRIED.keys())
def test_the_whole_batch_is_retried(account, moto_endpoint, answer, reason):
    account.map()
    account.send("first", "second")
    p = poller(moto_endpoint, Function(answer=answer))
    p.poll_once()
    assert account.bodies(account.queue_url) == ["first", "second"]
    [failure] = p.failures
    assert len(failure.message_ids) == 2
    assert failure.reason == reason


def test_a_raised_error_is_kept_by_type_only(account, moto_endpoint):
    account.map()
    account.send("first")
    p = poller(moto_endpoint, Function(answer=RuntimeError("lena.maier@example.com")))
    p.poll_once()
    [failure] = p.failures
    assert (failure.reason, failure.error_type) == ("function error", "RuntimeError")
    assert "lena" not in repr(failure)


ALL_SUCCEEDED = {
    "null answer": None,
    "empty answer": {},
    "empty list": {"batchItemFailures": []},
    "null list": {"batchItemFailures": None},
    # Lambda's pitfall, kept on purpose: a misspelled top-level key is a null list, so
    # the batch counts as a success and the messages the function failed are deleted.
    "misspelled top-level key": lambda records: {"BatchItemFailures": [
        {"itemIdentifier": r["messageId"]} for r in records]},
}


@pytest.mark.parametrize("answer", ALL_SUCCEEDED.values(), ids=ALL_SUCCEEDED.keys())
def test_the_whole_batch_succeeded(account, moto_endpoint, answer):
    account.map()
    account.send("first", "second")
    p = poller(moto_endpoint, Function(answer=answer))
    p.poll_once()
    assert everything_deleted(account)
    assert p.failures == [] and p.deleted == 2


def test_without_report_batch_item_failures_the_answer_is_ignored(account, moto_endpoint):
    account.map(report=False)
    account.send("good", POISON)
    p = poller(moto_endpoint, Function(answer=fails_poison))
    p.poll_once()
    assert everything_deleted(account)


def test_without_report_batch_item_failures_an_error_fails_the_batch(account, moto_endpoint):
    account.map(report=False)
    account.send("good", POISON)
    p = poller(moto_endpoint, Function(answer=ValueError("no")))
    p.poll_once()
    assert account.bodies(account.queue_url) == ["good", POISON]


# -- (d) disabled mappings ---------------------------------------------------------------

def test_a_disabled_mapping_is_not_polled(account, moto_endpoint):
    account.map(enabled=False)
    account.send("hello")
    function = Function()
    assert poller(moto_endpoint, function).poll_once() is False
    assert function.events == []
    found = account.sqs.receive_message(QueueUrl=account.queue_url, AttributeNames=["All"])
    [message] = found["Messages"]
    assert message["Attributes"]["ApproximateReceiveCount"] == "1"


# -- (e) the event's shape ---------------------------------------------------------------

def test_the_event_has_lambdas_shape(account, moto_endpoint):
    account.map()
    account.sqs.send_message(QueueUrl=account.queue_url, MessageBody="hello", MessageAttributes={
        "kind": {"DataType": "String", "StringValue": "user.registered"},
        "raw": {"DataType": "Binary", "BinaryValue": b"\x01\x02"}})
    function = Function()
    poller(moto_endpoint, function).poll_once()
    [event] = function.events
    [record] = event["Records"]
    [expected] = json.loads(SQS_EVENT.read_text())["Records"]
    assert set(event) == {"Records"}
    assert set(record) == set(expected)
    assert set(record["attributes"]) == set(expected["attributes"])
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == account.queue_arn
    assert record["awsRegion"] == REGION
    assert record["body"] == "hello"
    assert record["md5OfBody"] == "5d41402abc4b2a76b9719d911017c592"  # md5("hello")
    assert record["messageAttributes"] == {
        "kind": {"stringValue": "user.registered", "stringListValues": [],
                 "binaryListValues": [], "dataType": "String"},
        "raw": {"binaryValue": "AQI=", "stringListValues": [], "binaryListValues": [],
                "dataType": "Binary"}}


# -- the thread ---------------------------------------------------------------------------

def test_the_thread_drains_the_queues_and_stops(account, moto_endpoint):
    account.map()
    other_url, other_arn = account.queue("other")
    account.map(queue_arn=other_arn)
    function = Function(answer=fails_poison)
    p = poller(moto_endpoint, function).start()
    try:
        account.send("good", POISON)
        account.sqs.send_message(QueueUrl=other_url, MessageBody="other")
        assert p.drain(30)
    finally:
        assert p.stop()
    assert not p.running
    assert account.bodies(account.queue_url) == [] and account.bodies(other_url) == []
    assert account.bodies(account.dlq_url) == [POISON]
    assert function.most_running == 1  # one invocation at a time, in all
    assert "runbook-sqs-poller" not in [t.name for t in threading.enumerate()]


def test_the_thread_keeps_polling_after_the_poller_fails(account, moto_endpoint):
    gone_url, gone_arn = account.queue("gone")
    account.map(queue_arn=gone_arn)
    account.sqs.delete_queue(QueueUrl=gone_url)  # the mapping outlives its queue
    p = poller(moto_endpoint, Function()).start()
    try:
        assert not p.drain(0.5)
        assert p.running
    finally:
        assert p.stop()
    assert p.failures
    assert {(f.reason, f.error_type) for f in p.failures} == {
        ("poller error", "QueueDoesNotExist")}
