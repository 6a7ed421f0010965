"""A CloudWatch metric alarm (phase a4): messages in the dead-letter queue, errors of
the function that consumes the queue.

An alarm is found by name and compared as data, setting by setting. PutMetricAlarm
replaces an alarm whole and is an upsert, so an update sends every setting, and a
request retried after a lost answer does not make a second alarm. It ignores the tags
of an alarm that exists: those are added with TagResource.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runbook.aws import naming
from runbook.aws.api import Api, or_none, pages
from runbook.engine.plan import diff_field
from runbook.resources.base import DeleteOptions, Found, Resource, Spec


@dataclass(frozen=True)
class AlarmSpec(Spec):
    namespace: str = ""                  # "AWS/SQS", "AWS/Lambda"
    metric: str = ""                     # "ApproximateNumberOfMessagesVisible", "Errors"
    dimensions: dict = field(default_factory=dict)   # {"QueueName": "..."}
    statistic: str = "Maximum"
    period: int = 60
    evaluation_periods: int = 1
    threshold: float = 0.0
    comparison: str = "GreaterThanThreshold"
    treat_missing_data: str = "notBreaching"
    description: str = ""
    actions: tuple = ()                  # alarm actions (SNS topic ARNs), none by default

    @property
    def settings(self) -> dict:
        """The compared settings, by diff field."""
        return {"namespace": self.namespace, "metric": self.metric,
                "dimensions": dict(sorted(self.dimensions.items())),
                "statistic": self.statistic, "period": self.period,
                "evaluation_periods": self.evaluation_periods,
                "threshold": float(self.threshold), "comparison": self.comparison,
                "treat_missing_data": self.treat_missing_data,
                "description": self.description, "actions": list(self.actions)}


@dataclass
class AlarmFound(Found):
    """`id` is the alarm's ARN."""

    settings: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The alarm's name, from the ARN (arn:aws:cloudwatch:...:alarm:<name>)."""
        return self.id.split(":alarm:", 1)[1]


class Alarm(Resource[AlarmSpec, AlarmFound]):
    kind, service, plural = "cloudwatch:alarm", "cloudwatch", "alarms"
    label_id = False
    ops = {"create": "put_metric_alarm", "update": "put_metric_alarm", "tag": "tag_alarm"}

    def find(self, api: Api, spec: AlarmSpec) -> AlarmFound | None:
        """By name (unique in the account and region)."""
        cloudwatch = api.client("cloudwatch")
        alarms = cloudwatch.describe_alarms(AlarmNames=[spec.name],
                                            AlarmTypes=["MetricAlarm"])["MetricAlarms"]
        if not alarms:
            return None
        found = self._parse(cloudwatch, alarms[0])
        if found is not None:
            self.claim(spec, found)
        return found

    @staticmethod
    def _parse(cloudwatch, alarm: dict) -> AlarmFound | None:
        """A described alarm with its tags; None when it was deleted since."""
        tags = or_none(lambda: cloudwatch.list_tags_for_resource(
            ResourceARN=alarm["AlarmArn"])["Tags"])
        return None if tags is None else AlarmFound(alarm["AlarmArn"], naming.from_aws(tags),
                                                    settings(alarm))

    def summary(self, spec: AlarmSpec) -> dict:
        s = spec.settings
        return {"metric": f"{s['namespace']} {s['metric']} {s['dimensions']}",
                "when": f"{s['statistic']} {s['comparison']} {s['threshold']:g} over "
                        f"{s['evaluation_periods']} x {s['period']}s"}

    def diff(self, spec: AlarmSpec, found: AlarmFound) -> dict:
        diff: dict = {}
        for name, wanted in spec.settings.items():
            diff_field(diff, name, found.settings.get(name), wanted)
        return diff

    def create(self, api: Api, spec: AlarmSpec) -> AlarmFound:
        cloudwatch = api.client("cloudwatch")
        self._put(api, spec, Tags=naming.as_aws(spec.tags))
        # PutMetricAlarm answers with nothing: the ARN is read back.
        [alarm] = cloudwatch.describe_alarms(AlarmNames=[spec.name],
                                             AlarmTypes=["MetricAlarm"])["MetricAlarms"]
        return AlarmFound(alarm["AlarmArn"], dict(spec.tags), spec.settings)

    def update(self, api: Api, spec: AlarmSpec, found: AlarmFound, diff: dict,
               tags: dict) -> AlarmFound:
        self._put(api, spec)
        found.settings = spec.settings
        return found

    # -- teardown --------------------------------------------------------------------

    def owned(self, api: Api, env: str) -> list[AlarmFound]:
        """Every metric alarm whose tags (one call each: DescribeAlarms shows none)
        name `env`."""
        cloudwatch = api.client("cloudwatch")
        alarms = (self._parse(cloudwatch, alarm)
                  for alarm in pages(cloudwatch, "describe_alarms", "MetricAlarms",
                                     AlarmTypes=["MetricAlarm"]))
        return [a for a in alarms if a is not None and a.tags.get(naming.ENV_TAG) == env]

    def delete(self, api: Api, found: AlarmFound,
               options: DeleteOptions = DeleteOptions()) -> None:
        """DeleteAlarms of this one. An alarm already gone is done, and costs no write."""
        cloudwatch = api.client("cloudwatch")
        if not cloudwatch.describe_alarms(AlarmNames=[found.name],
                                          AlarmTypes=["MetricAlarm"])["MetricAlarms"]:
            return
        or_none(lambda: cloudwatch.delete_alarms(AlarmNames=[found.name]))

    @staticmethod
    def _put(api: Api, spec: AlarmSpec, **extra) -> None:
        api.client("cloudwatch").put_metric_alarm(
            AlarmName=spec.name, AlarmDescription=spec.description,
            Namespace=spec.namespace, MetricName=spec.metric,
            Dimensions=[{"Name": k, "Value": v} for k, v in sorted(spec.dimensions.items())],
            Statistic=spec.statistic, Period=spec.period,
            EvaluationPeriods=spec.evaluation_periods, Threshold=float(spec.threshold),
            ComparisonOperator=spec.comparison, TreatMissingData=spec.treat_missing_data,
            ActionsEnabled=True, AlarmActions=list(spec.actions), **extra)


def settings(alarm: dict) -> dict:
    """A described alarm's settings, as AlarmSpec.settings gives them."""
    return {"namespace": alarm.get("Namespace"), "metric": alarm.get("MetricName"),
            "dimensions": {d["Name"]: d["Value"]
                           for d in sorted(alarm.get("Dimensions") or (),
                                           key=lambda d: d["Name"])},
            "statistic": alarm.get("Statistic"), "period": alarm.get("Period"),
            "evaluation_periods": alarm.get("EvaluationPeriods"),
            "threshold": float(alarm["Threshold"]) if "Threshold" in alarm else None,
            "comparison": alarm.get("ComparisonOperator"),
            "treat_missing_data": alarm.get("TreatMissingData"),
            "description": alarm.get("AlarmDescription", ""),
            "actions": list(alarm.get("AlarmActions") or ())}
