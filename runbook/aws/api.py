"""What every resource needs from AWS, written once: "not found", pages, tags, the
account, and the named retries.

Resources (runbook.resources) read and write through an `Api`: the ClientFactory of the
run (every call counted and journalled there) plus the run's sleep, for retries. Nothing
else in runbook recognises a missing resource or adds a tag its own way.

A step's read runs inside `Api.reading()`, so that what the run has described once is
not described again: the factory answers a read it has answered before, until the run
writes what may change it (runbook.aws.readcache).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Callable

from runbook.aws import naming, retry

# Error codes that mean "no such resource", beyond the ones ending in NotFound,
# NotFoundFault or NotFoundException (InvalidVpcID.NotFound, DBClusterNotFoundFault,
# ResourceNotFoundException...). SQS says it for a queue name GetQueueUrl does not know:
# AWS.SimpleQueueService.NonExistentQueue (its query-compatible code), QueueDoesNotExist.
_NOT_FOUND = frozenset({"NoSuchEntity", "DBParameterGroupNotFound", "DBInstanceNotFound",
                        "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})


def not_found(exc: BaseException) -> bool:
    """Whether `exc` is AWS saying the resource asked for does not exist."""
    return is_not_found_code(retry.error_code(exc) or "")


def is_not_found_code(code: str) -> bool:
    return code in _NOT_FOUND or code.endswith(("NotFound", "NotFoundFault",
                                                "NotFoundException"))


def or_none(call: Callable[[], Any]) -> Any:
    """`call()`, or None when AWS says the resource does not exist."""
    try:
        return call()
    except Exception as exc:  # noqa: BLE001 - only "not found" is an answer
        if not_found(exc):
            return None
        raise


def pages(client, operation: str, key: str, **kwargs) -> list:
    """Every item of `key` over all pages of `operation`."""
    return [item for page in client.get_paginator(operation).paginate(**kwargs)
            for item in page[key]]


class Api:
    """The AWS seam resources use: clients, the account, tags and retries."""

    def __init__(self, aws, *, sleep: Callable[[float], None] = time.sleep):
        self.aws = aws                  # runbook.aws.clients.ClientFactory
        self.sleep = sleep
        self._account: str | None = None

    @property
    def region(self) -> str:
        return self.aws.region

    def client(self, service: str):
        return self.aws.client(service)

    @contextmanager
    def reading(self):
        """Let the reads made inside the block, in this thread, be answered from the
        run's read cache and kept there (ClientFactory.reading). For reads that plan: a
        wait or a retry in the block still asks AWS (runbook.aws.retry.polling)."""
        with self.aws.reading():
            yield

    def account(self) -> str:
        """The account of the credentials, asked once per Api (one per step instance)."""
        if self._account is None:
            self._account = self.aws.caller_account()
        return self._account

    def retry_ec2(self, call: Callable[[], Any]) -> Any:
        """EC2 writes right after a create can fail until the new id has propagated."""
        return retry.retry(call, when=retry.is_ec2_propagation_error,
                           policy=retry.EC2_PROPAGATION, sleep=self.sleep)

    def tag(self, service: str, resource: str, tags: dict[str, str]) -> None:
        """Add `tags` to one resource: `resource` is its id (ec2), name (iam role,
        secret), URL (sqs queue) or ARN (everything else)."""
        client = self.client(service)
        if service == "ec2":
            self.retry_ec2(lambda: client.create_tags(Resources=[resource],
                                                      Tags=naming.as_aws(tags)))
        elif service == "rds":
            client.add_tags_to_resource(ResourceName=resource, Tags=naming.as_aws(tags))
        elif service == "iam":
            client.tag_role(RoleName=resource, Tags=naming.as_aws(tags))
        elif service == "secretsmanager":
            client.tag_resource(SecretId=resource, Tags=naming.as_aws(tags))
        elif service == "logs":
            client.tag_resource(resourceArn=resource, tags=tags)
        elif service == "lambda":
            client.tag_resource(Resource=resource, Tags=tags)
        elif service == "sqs":
            client.tag_queue(QueueUrl=resource, Tags=tags)
        elif service in ("events", "cloudwatch"):
            client.tag_resource(ResourceARN=resource, Tags=naming.as_aws(tags))
        elif service == "dynamodb":
            client.tag_resource(ResourceArn=resource, Tags=naming.as_aws(tags))
        elif service == "kms":
            # KMS alone spells its tags TagKey/TagValue.
            client.tag_resource(KeyId=resource, Tags=[{"TagKey": k, "TagValue": v}
                                                      for k, v in sorted(tags.items())])
        else:
            raise ValueError(f"runbook does not tag {service} resources")
