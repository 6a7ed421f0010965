"""A CloudWatch Logs group with a retention: a Lambda function's /aws/lambda/<name>.

runbook creates the group itself, so that it has a retention and tags: Lambda would
make it on a first invocation, untagged and kept forever. One made that way (or by the
old scripts) is adopted: its retention set, its tags added.
"""

from __future__ import annotations

from dataclasses import dataclass

from runbook.aws.api import Api, pages
from runbook.engine.plan import diff_field
from runbook.resources.base import Found, Resource, Spec


@dataclass(frozen=True)
class LogGroupSpec(Spec):
    arn: str = ""                      # known beforehand: the name in the account and region
    retention_days: int = 30


@dataclass
class LogGroupFound(Found):
    """`id` is the group's ARN (without the ":*" of DescribeLogGroups' `arn`)."""

    retention_days: int | None = None  # None: kept forever


class LogGroup(Resource[LogGroupSpec, LogGroupFound]):
    kind, service, plural = "logs:log-group", "logs", "log groups"
    label_id = False
    ops = {"create": "create_log_group", "update": "set_retention", "tag": "tag_log_group"}

    def find(self, api: Api, spec: LogGroupSpec) -> LogGroupFound | None:
        """By name. Not claimed here: the caller claims, once it has read all it needs."""
        logs = api.client("logs")
        group = next((g for g in pages(logs, "describe_log_groups", "logGroups",
                                       logGroupNamePrefix=spec.name)
                      if g["logGroupName"] == spec.name), None)
        if group is None:
            return None
        # Lambda makes the group itself, untagged, on a first invocation without one.
        arn = group.get("logGroupArn") or group["arn"].removesuffix(":*")
        return LogGroupFound(arn, logs.list_tags_for_resource(resourceArn=arn)["tags"],
                             group.get("retentionInDays"))

    def summary(self, spec: LogGroupSpec) -> dict:
        return {"retention_days": spec.retention_days}

    def diff(self, spec: LogGroupSpec, found: LogGroupFound) -> dict:
        diff: dict = {}
        diff_field(diff, "retention_days", found.retention_days, spec.retention_days)
        return diff

    def create(self, api: Api, spec: LogGroupSpec) -> LogGroupFound:
        logs = api.client("logs")
        try:
            logs.create_log_group(logGroupName=spec.name, tags=spec.tags)
        except logs.exceptions.ResourceAlreadyExistsException:
            pass  # made by a concurrent run, or by Lambda on a first invocation
        found = LogGroupFound(spec.arn, dict(spec.tags), None)
        return self.update(api, spec, found, {"retention_days": spec.retention_days}, {})

    def update(self, api: Api, spec: LogGroupSpec, found: LogGroupFound, diff: dict,
               tags: dict) -> LogGroupFound:
        api.client("logs").put_retention_policy(logGroupName=spec.name,
                                                retentionInDays=spec.retention_days)
        found.retention_days = spec.retention_days
        return found
