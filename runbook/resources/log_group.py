"""A CloudWatch Logs group with a retention: a Lambda function's /aws/lambda/<name>.

runbook creates the group itself, so that it has a retention and tags: Lambda would
make it on a first invocation, untagged and kept forever. One made that way (or by the
old scripts) is adopted: its retention set, its tags added.

Teardown deletes a function's group after the function: a function still invoked would
make it again, untagged (runbook.teardown orders them).
"""

from __future__ import annotations

from dataclasses import dataclass

from runbook.aws import naming
from runbook.aws.api import Api, or_none, pages
from runbook.engine.plan import diff_field
from runbook.resources.base import DeleteOptions, Found, Resource, Spec


@dataclass(frozen=True)
class LogGroupSpec(Spec):
    arn: str = ""                      # known beforehand: the name in the account and region
    retention_days: int = 30


@dataclass
class LogGroupFound(Found):
    """`id` is the group's ARN (without the ":*" of DescribeLogGroups' `arn`)."""

    retention_days: int | None = None  # None: kept forever

    @property
    def name(self) -> str:
        """The group's name, from the ARN (a name holds no colon)."""
        return self.id.split(":log-group:", 1)[1]


class LogGroup(Resource[LogGroupSpec, LogGroupFound]):
    kind, service, plural = "logs:log-group", "logs", "log groups"
    label_id = False
    ops = {"create": "create_log_group", "update": "set_retention", "tag": "tag_log_group"}

    def find(self, api: Api, spec: LogGroupSpec) -> LogGroupFound | None:
        """By name. Not claimed here: the caller claims, once it has read all it needs."""
        logs = api.client("logs")
        group = self._named(logs, spec.name)
        return None if group is None else self._parse(logs, group)

    @staticmethod
    def _named(logs, name: str) -> dict | None:
        """The group named `name` as DescribeLogGroups lists it, or None."""
        return next((g for g in pages(logs, "describe_log_groups", "logGroups",
                                      logGroupNamePrefix=name)
                     if g["logGroupName"] == name), None)

    @staticmethod
    def _parse(logs, group: dict) -> LogGroupFound | None:
        """A group DescribeLogGroups lists, with its tags; None when it was deleted
        since the listing."""
        # Lambda makes the group itself, untagged, on a first invocation without one.
        arn = group.get("logGroupArn") or group["arn"].removesuffix(":*")
        tags = or_none(lambda: logs.list_tags_for_resource(resourceArn=arn)["tags"])
        return None if tags is None else LogGroupFound(arn, tags, group.get("retentionInDays"))

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

    # -- teardown --------------------------------------------------------------------

    def owned(self, api: Api, env: str) -> list[LogGroupFound]:
        """Every group whose tags (one call each: DescribeLogGroups shows none) name
        `env`."""
        logs = api.client("logs")
        groups = (self._parse(logs, group)
                  for group in pages(logs, "describe_log_groups", "logGroups"))
        return [g for g in groups if g is not None and g.tags.get(naming.ENV_TAG) == env]

    def delete(self, api: Api, found: LogGroupFound,
               options: DeleteOptions = DeleteOptions()) -> None:
        """DeleteLogGroup, with its streams and events. A group already gone is done,
        and costs no write."""
        logs = api.client("logs")
        if self._named(logs, found.name) is None:
            return
        or_none(lambda: logs.delete_log_group(logGroupName=found.name))
