"""A CloudWatch Logs group with a retention: a Lambda function's /aws/lambda/<name>.

runbook creates the group itself, so that it has a retention and tags: Lambda would
make it on a first invocation, untagged and kept forever. One made that way (or by the
old scripts) is adopted: its retention set, its tags added.
"""

from __future__ import annotations

from dataclasses import dataclass

from runbook.aws import naming
from runbook.aws.api import Api, pages
from runbook.engine.plan import Change
from runbook.resources.base import Apply, Found, Resource, Spec


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

    def plan(self, spec: LogGroupSpec, found: LogGroupFound | None, key: str) -> list[Change]:
        label = self.label(spec)
        if found is None:
            return [Change("create", label, "create_log_group", {"spec": spec},
                           {"retention_days": spec.retention_days},
                           run=Apply(self, key, "create"))]
        changes = []
        if found.retention_days != spec.retention_days:
            diff = {"retention_days": {"from": found.retention_days, "to": spec.retention_days}}
            changes.append(Change("update", label, "set_retention",
                                  {"spec": spec, "diff": diff, "tags": {}}, diff,
                                  run=Apply(self, key, "update")))
        add = naming.missing_tags(spec.tags, found.tags)
        if add:
            changes.append(Change("update", label, "tag_log_group", {"tags": add},
                                  {"tags": naming.tag_diff(found.tags, add)},
                                  run=Apply(self, key, "tag")))
        return changes

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
