"""An SQS queue with SSE-SQS, a redrive policy and a queue policy (phase a4): the
queue EventBridge delivers to, and its dead-letter queue.

moto does not check queue policies (it delivers to a queue with none), so nothing in a
dry run would notice a policy that admits too much or too little: the policy is read
back and compared as data, and one that differs from what runbook wants is an update.

moto (5.2.5) clears a queue's policy on every SetQueueAttributes that does not carry one:
an update therefore always sends the policy with what changed (on AWS, setting the
same policy again changes nothing), so that the sandbox keeps it.

A queue is found by name (GetQueueUrl). CreateQueue with the attributes of a queue that
exists answers with that queue, so a request retried after a lost answer does not make
a second one.

Deleting a queue takes AWS up to 60 seconds, in which the queue may still answer (and
be listed): `gone` asks GetQueueUrl until it no longer knows the name. For 60 seconds
after the deletion, a queue of the same name cannot be made (CreateQueue answers
QueueDeletedRecently): a run of the same environment started within a minute of a
destroy waits that out (DELETED_RECENTLY) rather than fail at step event-bus. moto
never answers so; tests/unit/test_queue_deleted_recently.py makes the answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from runbook.aws import naming, policies, retry
from runbook.aws.api import Api, or_none
from runbook.engine.plan import diff_field
from runbook.errors import PlanError
from runbook.resources.base import DeleteOptions, Found, Resource, Spec


def queue_arn(region: str, account: str, name: str) -> str:
    return f"arn:aws:sqs:{region}:{account}:{name}"


def events_policy(queue: str, rule: str) -> dict:
    """The queue policy that lets EventBridge send to `queue` (an ARN) for the rule whose
    ARN is `rule`, and nobody else anything."""
    return {"Version": "2012-10-17",
            "Statement": [{"Sid": "events", "Effect": "Allow",
                           "Principal": {"Service": "events.amazonaws.com"},
                           "Action": "sqs:SendMessage", "Resource": queue,
                           "Condition": {"ArnEquals": {"aws:SourceArn": rule}}}]}


def redrive(dead_letter_arn: str, max_receive_count: int = 5) -> dict:
    """A RedrivePolicy: after `max_receive_count` receives a message moves to the DLQ
    (5 or more, so that throttled deliveries to Lambda do not dead-letter it)."""
    return {"deadLetterTargetArn": dead_letter_arn, "maxReceiveCount": max_receive_count}


# A queue of the name was deleted less than 60 s ago: 5 + 10 + 20 + 30 + 30 = 95 s.
DELETED_RECENTLY = retry.Policy("queue of this name deleted recently", attempts=6,
                                first_delay_s=5, max_delay_s=30)


def deleted_recently(exc: BaseException) -> bool:
    """CreateQueue's answer within 60 s of a DeleteQueue of the name (its JSON code, and
    the query API's)."""
    return retry.error_code(exc) in ("QueueDeletedRecently",
                                     "AWS.SimpleQueueService.QueueDeletedRecently")


@dataclass(frozen=True)
class QueueSpec(Spec):
    arn: str = ""                        # queue_arn(...): known beforehand
    visibility_timeout: int = 30
    retention_seconds: int = 345600
    redrive: dict | None = None          # redrive(...), None for a DLQ
    policy: dict = field(default_factory=dict)   # events_policy(...)

    @property
    def attributes(self) -> dict[str, str]:
        """What CreateQueue and SetQueueAttributes take, by diff field."""
        return {"visibility_timeout": str(self.visibility_timeout),
                "retention_seconds": str(self.retention_seconds),
                "sse": "true",
                "redrive": json.dumps(self.redrive) if self.redrive else "",
                "policy": json.dumps(self.policy)}


# The queue attribute behind each diff field.
ATTRIBUTES = {"visibility_timeout": "VisibilityTimeout",
              "retention_seconds": "MessageRetentionPeriod",
              "sse": "SqsManagedSseEnabled", "redrive": "RedrivePolicy", "policy": "Policy"}


@dataclass
class QueueFound(Found):
    """`id` is the queue's URL."""

    arn: str = ""
    visibility_timeout: int = 30
    retention_seconds: int = 345600
    sse: bool = False                    # SSE-SQS
    kms_key: str | None = None           # SSE-KMS instead
    redrive: dict | None = None
    policy: dict | None = None

    @property
    def name(self) -> str:
        """The queue's name, the last part of its URL."""
        return self.id.rsplit("/", 1)[1]


class Queue(Resource[QueueSpec, QueueFound]):
    kind, service, plural = "sqs:queue", "sqs", "queues"
    label_id = False
    ops = {"create": "create_queue", "update": "set_queue_attributes", "tag": "tag_queue"}

    # -- read ------------------------------------------------------------------------

    def find(self, api: Api, spec: QueueSpec) -> QueueFound | None:
        """By name, with its attributes and tags."""
        sqs = api.client("sqs")
        url = or_none(lambda: sqs.get_queue_url(QueueName=spec.name)["QueueUrl"])
        if url is None:
            return None
        found = parse(url, sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
                      ["Attributes"], sqs.list_queue_tags(QueueUrl=url).get("Tags") or {})
        self.claim(spec, found)
        return found

    # -- plan (pure) -------------------------------------------------------------------

    def summary(self, spec: QueueSpec) -> dict:
        out = {"visibility_timeout": spec.visibility_timeout,
               "retention_seconds": spec.retention_seconds, "encryption": "SSE-SQS"}
        if spec.redrive:
            out["redrive"] = spec.redrive
        return {**out, "policy": policy_lines(spec.policy)}

    def check(self, spec: QueueSpec, found: QueueFound) -> None:
        if found.kms_key:
            raise PlanError(spec.step, self.label(spec),
                            f"it is encrypted with KMS key {found.kms_key}; runbook keeps "
                            "this queue on SSE-SQS, which EventBridge can deliver to "
                            "without a key policy. Remove its KmsMasterKeyId, or set "
                            f"{spec.field} to another name.")

    def diff(self, spec: QueueSpec, found: QueueFound) -> dict:
        diff: dict = {}
        diff_field(diff, "visibility_timeout", found.visibility_timeout,
                   spec.visibility_timeout)
        diff_field(diff, "retention_seconds", found.retention_seconds, spec.retention_seconds)
        diff_field(diff, "sse", found.sse, True)
        diff_field(diff, "redrive", found.redrive, spec.redrive)
        if not policies.same(found.policy, spec.policy):
            diff["policy"] = {"from": policy_lines(found.policy),
                              "to": policy_lines(spec.policy)}
        return diff

    # -- apply -------------------------------------------------------------------------

    def create(self, api: Api, spec: QueueSpec) -> QueueFound:
        attributes = {ATTRIBUTES[name]: value for name, value in spec.attributes.items()
                      if value}
        url = retry.retry(lambda: api.client("sqs").create_queue(
            QueueName=spec.name, Attributes=attributes, tags=spec.tags)["QueueUrl"],
            when=deleted_recently, policy=DELETED_RECENTLY, sleep=api.sleep)
        return QueueFound(url, dict(spec.tags), spec.arn, spec.visibility_timeout,
                          spec.retention_seconds, True, None, spec.redrive, spec.policy)

    def update(self, api: Api, spec: QueueSpec, found: QueueFound, diff: dict,
               tags: dict) -> QueueFound:
        """The attributes that differ, and the policy (see the module docstring). An
        empty RedrivePolicy removes it."""
        wanted = spec.attributes
        api.client("sqs").set_queue_attributes(
            QueueUrl=found.id, Attributes={ATTRIBUTES[name]: wanted[name]
                                           for name in {*diff, "policy"}})
        for name in {*diff, "policy"}:
            setattr(found, name, True if name == "sse" else getattr(spec, name))
        return found

    # -- teardown --------------------------------------------------------------------

    def owned(self, api: Api, env: str) -> list[QueueFound]:
        """Every queue whose tags (one call each: ListQueues shows none) name `env`. A
        queue deleted in the last minute may still be listed; it is left out once it no
        longer answers."""
        sqs = api.client("sqs")
        # ListQueues pages only when given MaxResults (else: the first 1000), and leaves
        # QueueUrls out of a page without queues.
        urls = [url for page in sqs.get_paginator("list_queues").paginate(MaxResults=1000)
                for url in page.get("QueueUrls", ())]
        owned = []
        for url in urls:
            tags = or_none(lambda: sqs.list_queue_tags(QueueUrl=url).get("Tags") or {})
            if tags is None or tags.get(naming.ENV_TAG) != env:
                continue
            attributes = or_none(lambda: sqs.get_queue_attributes(
                QueueUrl=url, AttributeNames=["All"])["Attributes"])
            if attributes is not None:
                owned.append(parse(url, attributes, tags))
        return owned

    def delete(self, api: Api, found: QueueFound,
               options: DeleteOptions = DeleteOptions()) -> None:
        """DeleteQueue, with its messages. A queue gone is done, and costs no write (one
        still answering in the minute its deletion takes is asked again, harmlessly).
        Its name stays taken for 60 s: see the module docstring."""
        sqs = api.client("sqs")
        if or_none(lambda: sqs.get_queue_attributes(QueueUrl=found.id,
                                                    AttributeNames=["QueueArn"])) is None:
            return
        or_none(lambda: sqs.delete_queue(QueueUrl=found.id))

    def gone(self, api: Api, found: QueueFound) -> bool:
        """Whether GetQueueUrl no longer knows the queue's name (up to 60 s after
        DeleteQueue)."""
        return or_none(lambda: api.client("sqs").get_queue_url(QueueName=found.name)) is None


def parse(url: str, attributes: dict, tags: dict) -> QueueFound:
    """A queue from GetQueueUrl, GetQueueAttributes and ListQueueTags."""
    raw_redrive = attributes.get("RedrivePolicy")
    found_redrive = None
    if raw_redrive:
        loaded = json.loads(raw_redrive)
        # AWS has given maxReceiveCount as a number and as a string.
        found_redrive = {"deadLetterTargetArn": loaded.get("deadLetterTargetArn"),
                         "maxReceiveCount": int(loaded.get("maxReceiveCount", 0))}
    return QueueFound(url, dict(tags), attributes["QueueArn"],
                      int(attributes.get("VisibilityTimeout", 30)),
                      int(attributes.get("MessageRetentionPeriod", 345600)),
                      attributes.get("SqsManagedSseEnabled") == "true",
                      attributes.get("KmsMasterKeyId") or None, found_redrive,
                      policies.document(attributes.get("Policy") or None))


def policy_lines(policy: dict | None) -> list[str] | None:
    """A queue policy as one line per statement, who may do what on what and when:
    `allow events.amazonaws.com sqs:SendMessage on <queue> if ArnEquals aws:SourceArn
    <rule>`. Unlike policies.summary it shows the principal and the condition, which is
    what a queue policy's drift is about."""
    if policy is None:
        return None
    found = policy.get("Statement", [])
    lines = []
    for statement in found if isinstance(found, list) else [found]:
        principal = statement.get("Principal", "")
        if isinstance(principal, dict):
            principal = ", ".join(str(v) for values in principal.values()
                                  for v in (values if isinstance(values, list) else [values]))
        line = (f"{statement.get('Effect', '').lower()} {principal} "
                f"{_joined(statement.get('Action'))} on {_joined(statement.get('Resource'))}")
        conditions = [f"{op} {key} {_joined(value)}"
                      for op, tests in sorted((statement.get("Condition") or {}).items())
                      for key, value in sorted(tests.items())]
        lines.append(line + (" if " + " and ".join(conditions) if conditions else ""))
    return lines


def _joined(value) -> str:
    return ", ".join(str(v) for v in (value if isinstance(value, list) else [value]))
