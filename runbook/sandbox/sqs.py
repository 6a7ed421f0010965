"""Lambda's SQS poller, for the sandbox: what runs an SQS event source mapping there.

On AWS, Lambda polls each enabled SQS mapping: it receives up to BatchSize messages,
invokes the function with one event for the batch, deletes what succeeded and leaves
the rest to reappear after the queue's visibility timeout, until the queue's
RedrivePolicy moves them to the DLQ. moto 5.2.5 keeps the mapping but runs it wrongly:
it fires inside SendMessage (so also inside EventBridge delivery), one message per
invoke, through Docker; without Docker the invoke fails, the message's
ApproximateReceiveCount goes up by one and it is never tried again. So a dry run could
prove neither delivery nor partial batch failure.

`install` switches moto's firing off; `Poller` does Lambda's part instead, reading the
mappings back through the sandbox's API as any client would, so ListEventSourceMappings
and GetEventSourceMapping still answer as AWS does. How Lambda reads a function's answer
with ReportBatchItemFailures is `failed_ids`, a pure function (AWS-FACTS A).
"""

from __future__ import annotations

import base64
import threading
import time
from dataclasses import dataclass
from typing import Callable

# What goes into the report's `simulated` list.
SIMULATED_FIRING = ("SQS event source mappings in moto: moto's own delivery, which fires "
                    "inside SendMessage, needs Docker and never retries, is switched off "
                    "(runbook.sandbox.sqs.install); mappings are still created, listed and "
                    "read back as on AWS")
SIMULATED_POLLER = ("Lambda's SQS poller: the sandbox polls every enabled SQS mapping in one "
                    "thread, one batch at a time (so never more than one invocation per "
                    "mapping, within any MaximumConcurrency), sends up to BatchSize messages "
                    "in Lambda's event shape, deletes what succeeded, reads batchItemFailures "
                    "as Lambda does, and makes a failed message visible again after {delay:g} s "
                    "instead of the queue's visibility timeout")

REPORT_BATCH_ITEM_FAILURES = "ReportBatchItemFailures"
# How long a failed message stays hidden in the sandbox (the queue says 180 s).
RETRY_DELAY_S = 1
# Lambda's SQS batches hold at most 10 messages unless a batching window is set, and
# ReceiveMessage returns at most 10 in any case.
RECEIVE_MAX = 10


def install() -> bool:
    """Stop the in-process moto from running SQS mappings itself; False if already done.

    moto's Queue.add_message invokes every mapping in `queue.lambda_event_source_mappings`
    (moto/sqs/models.py, add_message), and CreateEventSourceMapping fills that dict
    (moto/awslambda/models.py). Making the attribute an always-empty dict on the class
    leaves moto's Lambda backend, which lists and describes the mappings, untouched, and
    only the firing goes. No test relies on the firing: it cannot work without Docker.
    """
    from moto.sqs.models import Queue

    if isinstance(Queue.__dict__.get("lambda_event_source_mappings"), property):
        return False

    def never_mapped(self) -> dict:
        return {}  # a new dict each time: what moto stores into it is dropped

    def ignore(self, value) -> None:
        pass

    Queue.lambda_event_source_mappings = property(never_mapped, ignore, doc=install.__doc__)
    return True


# -- how Lambda reads a batch's answer ---------------------------------------------------

def failed_ids(invocation, message_ids: list[str], *, report_failures: bool) -> set[str]:
    """The ids of the batch's messages Lambda would leave on the queue (see verdict)."""
    return verdict(invocation, message_ids, report_failures=report_failures)[0]


def verdict(invocation, message_ids: list[str], *,
            report_failures: bool) -> tuple[set[str], str | None]:
    """(the ids of the batch's messages Lambda would leave on the queue, why: "function
    error", "invalid response", "batch item failures", or None when all succeeded).

    A function error fails the whole batch. Without ReportBatchItemFailures in the
    mapping, the answer is ignored. With it (https://docs.aws.amazon.com/lambda/latest/dg/
    with-sqs.html#services-sqs-batchfailurereporting): an empty or null answer or list
    is a success, and so is a misspelled top-level key, which reads as a null list; an
    answer of the wrong shape, an empty or null itemIdentifier, or an id not in the
    batch fails the whole batch; otherwise exactly the listed ids failed.
    """
    everything, invalid = set(message_ids), "invalid response"
    if not invocation.ok:
        return everything, "function error"
    result = invocation.result
    if not report_failures or result is None or result == "":
        return set(), None
    if not isinstance(result, dict):
        return everything, invalid
    items = result.get("batchItemFailures")
    if items is None:
        return set(), None
    if not isinstance(items, list):
        return everything, invalid
    failed = set()
    for item in items:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not isinstance(identifier, str) or identifier not in everything:
            return everything, invalid
        failed.add(identifier)
    return failed, ("batch item failures" if failed else None)


def sqs_event(messages: list[dict], queue_arn: str) -> dict:
    """Lambda's event for a batch of ReceiveMessage messages from `queue_arn`."""
    region = queue_arn.split(":")[3]
    return {"Records": [{
        "messageId": m["MessageId"],
        "receiptHandle": m["ReceiptHandle"],
        "body": m["Body"],
        "attributes": dict(m.get("Attributes") or {}),
        "messageAttributes": {name: _lambda_attribute(value)
                              for name, value in (m.get("MessageAttributes") or {}).items()},
        "md5OfBody": m["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    } for m in messages]}


def _lambda_attribute(value: dict) -> dict:
    """A message attribute as Lambda spells it: lower camel case, binary as base64."""
    attribute = {"stringListValues": [], "binaryListValues": [], "dataType": value["DataType"]}
    if "StringValue" in value:
        attribute["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        attribute["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode("ascii")
    return attribute


# -- the poller -------------------------------------------------------------------------

@dataclass(frozen=True)
class Failure:
    """A batch, or part of one, that failed; kept so that a check can report it. It holds
    ids and error types only, never a message body or an error message (either may
    carry an address)."""

    mapping: str                  # the mapping's UUID ("" for the poller's own errors)
    function: str                 # the function's ARN
    queue: str                    # the queue's ARN
    reason: str                   # "function error", "invalid response", "batch item failures", "poller error"
    error_type: str | None        # the function's (or the poller's) error type
    message_ids: tuple[str, ...]


Invoke = Callable[[str, dict], object]  # (function name or ARN, event) -> Invocation


class Poller:
    """Polls the enabled SQS mappings of one region of the sandbox, as Lambda does.

    `aws` gives the poller its own clients (`aws.client("lambda" | "sqs")`), pointed at
    the sandbox; `invoke` runs a function (the sandbox's LocalInvoker.invoke).
    `retry_delay_s` compresses time: a failed message is visible again after it, not
    after the queue's visibility timeout. `interval_s` is the pause when idle.
    `any_mapping`, when given, says cheaply whether the account holds an SQS mapping at
    all (the sandbox reads its in-process moto): while it holds none, a poll asks
    nothing, where it would list the mappings five times a second for nothing.

    One thread does everything in turn, so there is at most one invocation in flight in
    all, which honours every MaximumConcurrency (its minimum is 2).
    """

    def __init__(self, aws, invoke: Invoke, *, interval_s: float = 0.2,
                 retry_delay_s: int = RETRY_DELAY_S, join_timeout_s: float = 60.0,
                 any_mapping: Callable[[], bool] | None = None):
        self.aws = aws
        self.invoke = invoke
        self.any_mapping = any_mapping
        self.interval_s = interval_s
        self.retry_delay_s = retry_delay_s
        self.join_timeout_s = join_timeout_s
        self.failures: list[Failure] = []
        self.invocations = 0
        self.deleted = 0
        self._queue_urls: dict[str, str] = {}
        self._retry_until = 0.0   # monotonic time before which a failed message is hidden
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._idle = threading.Condition()
        self._cycle = 0           # cycles completed
        self._idle_cycle = -1     # the last cycle that found nothing to do

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> "Poller":
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="runbook-sqs-poller",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> bool:
        """Stop polling and wait for the batch in flight; False if the thread is still
        running after join_timeout_s (an invocation longer than that; it is a daemon)."""
        self._stop.set()
        with self._idle:
            self._idle.notify_all()
        if self._thread is None:
            return True
        self._thread.join(self.join_timeout_s)
        stopped = not self._thread.is_alive()
        if stopped:
            self._thread = None
        return stopped

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def drain(self, timeout_s: float) -> bool:
        """Wait until the mapped queues are idle: a whole poll that began after this
        call found no visible message, no invocation in flight, and no failed message
        still waiting out retry_delay_s. False if that did not happen within timeout_s,
        which includes a poller that keeps failing (see `failures`)."""
        deadline = time.monotonic() + timeout_s
        with self._idle:
            # cycle start + 1 may have begun before this call; start + 2 began after it
            start = self._cycle
            while self._idle_cycle < start + 2:
                left = deadline - time.monotonic()
                if left <= 0 or self._stop.is_set():
                    return False
                self._idle.wait(min(left, 0.5))
            return True

    # -- polling -------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            hidden = time.monotonic() < self._retry_until
            try:
                busy = self.poll_once()
                idle = not busy and not hidden
            except Exception as exc:  # noqa: BLE001 - never raise into the runner
                error = Failure("", "", "", "poller error", type(exc).__name__, ())
                if not self.failures or self.failures[-1] != error:  # once, not 5 a second
                    self.failures.append(error)
                busy = idle = False  # a poll that failed saw nothing: not idle
            with self._idle:
                self._cycle += 1
                if idle:
                    self._idle_cycle = self._cycle
                self._idle.notify_all()
            if not busy:
                self._stop.wait(self.interval_s)

    def poll_once(self) -> bool:
        """One batch from each enabled SQS mapping; True if any messages came. A mapping
        whose poll fails (its queue deleted, say) is recorded and skipped: the others go
        on, as Lambda's pollers are independent. Raises only when no mapping was polled
        well."""
        if self.any_mapping is not None and not self.any_mapping():
            return False
        busy, errors, mappings = False, [], self.mappings()
        for mapping in mappings:
            if self._stop.is_set():
                break
            try:
                busy = self._poll(mapping) or busy
            except Exception as exc:  # noqa: BLE001 - one mapping's trouble stays its own
                errors.append(exc)
                error = Failure(mapping.get("UUID", ""), mapping.get("FunctionArn", ""),
                                mapping.get("EventSourceArn", ""), "poller error",
                                type(exc).__name__, ())
                if error not in self.failures:
                    self.failures.append(error)
        if errors and len(errors) == len(mappings):
            raise errors[0]
        return busy

    def mappings(self) -> list[dict]:
        """The region's enabled mappings whose source is an SQS queue."""
        lam = self.aws.client("lambda")
        found = []
        for page in lam.get_paginator("list_event_source_mappings").paginate():
            found += [m for m in page["EventSourceMappings"]
                      if m.get("State") == "Enabled"
                      and m.get("EventSourceArn", "").split(":")[2:3] == ["sqs"]]
        return found

    def _poll(self, mapping: dict) -> bool:
        queue_arn, function = mapping["EventSourceArn"], mapping["FunctionArn"]
        sqs = self.aws.client("sqs")
        url = self._queue_url(queue_arn)
        messages = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=min(int(mapping.get("BatchSize") or 10), RECEIVE_MAX),
            AttributeNames=["All"], MessageAttributeNames=["All"],
            WaitTimeSeconds=0).get("Messages") or []
        if not messages:
            return False
        ids = [m["MessageId"] for m in messages]
        report = REPORT_BATCH_ITEM_FAILURES in (mapping.get("FunctionResponseTypes") or [])
        self.invocations += 1
        try:
            invocation = self.invoke(function, sqs_event(messages, queue_arn))
        except Exception as exc:  # noqa: BLE001 - a failed invoke fails the batch
            invocation = _Raised(type(exc).__name__)
        failed, reason = verdict(invocation, ids, report_failures=report)
        if failed:
            self._fail(mapping["UUID"], function, queue_arn, reason, invocation.error_type,
                       [i for i in ids if i in failed])
            self._retry_later(url, [m for m in messages if m["MessageId"] in failed])
        self._delete(url, [m for m in messages if m["MessageId"] not in failed])
        return True

    def _queue_url(self, queue_arn: str) -> str:
        if queue_arn not in self._queue_urls:
            _, _, _, _, account, name = queue_arn.split(":")
            self._queue_urls[queue_arn] = self.aws.client("sqs").get_queue_url(
                QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]
        return self._queue_urls[queue_arn]

    def _delete(self, url: str, messages: list[dict]) -> None:
        if not messages:
            return
        answer = self.aws.client("sqs").delete_message_batch(QueueUrl=url, Entries=[
            {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(messages)])
        self.deleted += len(answer.get("Successful") or [])

    def _retry_later(self, url: str, messages: list[dict]) -> None:
        """Make failed messages visible again after retry_delay_s (time compressed: on
        AWS they reappear when the queue's visibility timeout runs out)."""
        self._retry_until = time.monotonic() + self.retry_delay_s
        self.aws.client("sqs").change_message_visibility_batch(QueueUrl=url, Entries=[
            {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"],
             "VisibilityTimeout": self.retry_delay_s} for n, m in enumerate(messages)])

    def _fail(self, mapping, function, queue, reason, error_type, ids) -> None:
        self.failures.append(Failure(mapping, function, queue, reason, error_type, tuple(ids)))


@dataclass
class _Raised:
    """An invoke that raised, read as Lambda reads a function error."""

    error_type: str
    ok: bool = False
    result: object = None
