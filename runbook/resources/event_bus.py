"""An EventBridge custom bus, a rule on it and the rule's SQS target (phase a4); and a
schedule, a rule on the default bus with a ScheduleExpression, whose target is a function.

The rule's ARN is known before it exists (`rule_arn`): the queue policies that admit
EventBridge name it, so they can be made before the rule.

The pattern and the target are compared as data: AWS gives a pattern back as JSON text
in its own spacing, and a target as the whole object PutTargets stored. PutRule and
PutTargets replace what they name whole (an argument left out is cleared), so an update
sends everything; both are upserts, so a request retried after a lost answer does not
make a second one. A target has no tags: it is claimed through its rule's.

Teardown deletes a rule with its targets (EventBridge refuses to delete a rule that
still has some), and a bus only once its rules are gone, which EventBridge also
requires: runbook.teardown orders the rules, on every bus, the default one included
(the relay's schedule is there), before the buses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from runbook.aws import naming
from runbook.aws.api import Api, or_none, pages
from runbook.engine.plan import Change, diff_field
from runbook.errors import StepFailed
from runbook.resources.base import DeleteOptions, Found, Resource, Spec


def bus_arn(region: str, account: str, bus: str) -> str:
    return f"arn:aws:events:{region}:{account}:event-bus/{bus}"


DEFAULT_BUS = "default"
REMOVE_TARGETS_MAX = 100   # ids RemoveTargets takes in one call


def rule_arn(region: str, account: str, bus: str, rule: str) -> str:
    """The ARN of a rule on a custom bus; the default bus's rules have no bus segment."""
    if bus == DEFAULT_BUS:
        return f"arn:aws:events:{region}:{account}:rule/{rule}"
    return f"arn:aws:events:{region}:{account}:rule/{bus}/{rule}"


def _tags(api: Api, arn: str) -> dict:
    return naming.from_aws(api.client("events").list_tags_for_resource(
        ResourceARN=arn)["Tags"])


def _tags_or_none(api: Api, arn: str) -> dict | None:
    """`_tags`, or None when the resource was deleted since it was listed."""
    return or_none(lambda: _tags(api, arn))


def _buses(api: Api) -> list[dict]:
    """Every bus of the account and region, the default one included (ListEventBuses
    has no paginator)."""
    events, buses, token = api.client("events"), [], None
    while True:
        page = events.list_event_buses(**({"NextToken": token} if token else {}))
        buses += page.get("EventBuses", [])
        token = page.get("NextToken")
        if not token:
            return buses


# -- the bus -------------------------------------------------------------------------------

@dataclass(frozen=True)
class EventBusSpec(Spec):
    pass


@dataclass
class EventBusFound(Found):
    """`id` is the bus's ARN."""

    @property
    def name(self) -> str:
        """The bus's name, from the ARN (...:event-bus/<name>)."""
        return self.id.split(":event-bus/", 1)[1]


class EventBus(Resource[EventBusSpec, EventBusFound]):
    kind, service, plural = "events:event-bus", "events", "event buses"
    label_id = False
    ops = {"create": "create_event_bus", "tag": "tag_event_bus"}

    def find(self, api: Api, spec: EventBusSpec) -> EventBusFound | None:
        """By name (unique in the account and region)."""
        found = self.read(api, spec.name)
        if found is not None:
            self.claim(spec, found)
        return found

    @staticmethod
    def read(api: Api, name: str) -> EventBusFound | None:
        bus = or_none(lambda: api.client("events").describe_event_bus(Name=name))
        return None if bus is None else EventBusFound(bus["Arn"], _tags(api, bus["Arn"]))

    def create(self, api: Api, spec: EventBusSpec) -> EventBusFound:
        events = api.client("events")
        try:
            arn = events.create_event_bus(Name=spec.name,
                                          Tags=naming.as_aws(spec.tags))["EventBusArn"]
        except events.exceptions.ResourceAlreadyExistsException:
            # The answer to an earlier attempt was lost, or a concurrent run made it: what
            # exists is taken only if it is this environment's, and given its tags.
            found = self.find(api, spec)
            if found is None:
                raise StepFailed(spec.step, self.label(spec), "AWS said it exists, and "
                                 "then that it does not: run again") from None
            missing = naming.missing_tags(spec.tags, found.tags)
            return self.tag(api, found, missing) if missing else found
        return EventBusFound(arn, dict(spec.tags))

    # -- teardown --------------------------------------------------------------------

    def owned(self, api: Api, env: str) -> list[EventBusFound]:
        """Every custom bus whose tags name `env` (the default bus is the account's)."""
        owned = []
        for bus in _buses(api):
            if bus["Name"] == DEFAULT_BUS:
                continue
            tags = _tags_or_none(api, bus["Arn"])
            if tags is not None and tags.get(naming.ENV_TAG) == env:
                owned.append(EventBusFound(bus["Arn"], tags))
        return owned

    def delete(self, api: Api, found: EventBusFound,
               options: DeleteOptions = DeleteOptions()) -> None:
        """DeleteEventBus, once its rules are gone (see the module docstring). A bus
        already gone is done, and costs no write."""
        events = api.client("events")
        if or_none(lambda: events.describe_event_bus(Name=found.name)) is None:
            return
        or_none(lambda: events.delete_event_bus(Name=found.name))


# -- the rule ------------------------------------------------------------------------------

@dataclass(frozen=True)
class RuleSpec(Spec):
    """A rule matches events (`pattern`) or runs on a schedule (`schedule`, e.g.
    "rate(5 minutes)"; only the default bus has schedules)."""

    arn: str = ""                        # rule_arn(...): known beforehand
    bus: str = ""
    pattern: dict = field(default_factory=dict)
    description: str = ""
    schedule: str = ""

    def matches(self) -> dict:
        """What PutRule takes for what triggers it: a pattern or a schedule."""
        if self.schedule:
            return {"ScheduleExpression": self.schedule}
        return {"EventPattern": json.dumps(self.pattern)}


@dataclass
class RuleFound(Found):
    """`id` is the rule's ARN."""

    pattern: dict | None = None
    state: str = ""
    description: str = ""
    schedule: str = ""

    @property
    def name(self) -> str:
        """The rule's name, from the ARN (...:rule/<name>, or ...:rule/<bus>/<name>)."""
        return self.id.rsplit("/", 1)[1]

    @property
    def bus(self) -> str:
        """The rule's bus, from the ARN: a default bus rule's has no bus segment (a
        partner bus's name has slashes of its own)."""
        path = self.id.split(":rule/", 1)[1]
        return path.rsplit("/", 1)[0] if "/" in path else DEFAULT_BUS

    @classmethod
    def parse(cls, rule: dict, tags: dict) -> "RuleFound":
        """A rule as DescribeRule or ListRules gives it, with its tags."""
        pattern = rule.get("EventPattern")
        return cls(rule["Arn"], tags, json.loads(pattern) if pattern else None,
                   rule.get("State", ""), rule.get("Description", ""),
                   rule.get("ScheduleExpression", ""))


class Rule(Resource[RuleSpec, RuleFound]):
    kind, service, plural = "events:rule", "events", "rules"
    label_id = False
    ops = {"create": "put_rule", "update": "put_rule", "tag": "tag_rule"}

    def find(self, api: Api, spec: RuleSpec) -> RuleFound | None:
        """By name on the bus (none while the bus does not exist)."""
        rule = or_none(lambda: api.client("events").describe_rule(Name=spec.name,
                                                                  EventBusName=spec.bus))
        if rule is None:
            return None
        found = RuleFound.parse(rule, _tags(api, rule["Arn"]))
        self.claim(spec, found)
        return found

    def summary(self, spec: RuleSpec) -> dict:
        if spec.schedule:
            return {"bus": spec.bus, "schedule": spec.schedule}
        return {"bus": spec.bus, "pattern": spec.pattern}

    def diff(self, spec: RuleSpec, found: RuleFound) -> dict:
        diff: dict = {}
        if spec.schedule:
            diff_field(diff, "schedule", found.schedule, spec.schedule)
            diff_field(diff, "pattern", found.pattern, None)
        else:
            diff_field(diff, "pattern", found.pattern, spec.pattern)
            diff_field(diff, "schedule", found.schedule, "")
        diff_field(diff, "state", found.state, "ENABLED")
        diff_field(diff, "description", found.description, spec.description)
        return diff

    def create(self, api: Api, spec: RuleSpec) -> RuleFound:
        return self._put(api, spec, Tags=naming.as_aws(spec.tags))

    def update(self, api: Api, spec: RuleSpec, found: RuleFound, diff: dict,
               tags: dict) -> RuleFound:
        # Tags given to PutRule apply to a new rule only: an existing one is tagged apart.
        updated = self._put(api, spec)
        updated.tags = found.tags
        return updated

    @staticmethod
    def _put(api: Api, spec: RuleSpec, **tags) -> RuleFound:
        arn = api.client("events").put_rule(
            Name=spec.name, EventBusName=spec.bus, **spec.matches(),
            State="ENABLED", Description=spec.description, **tags)["RuleArn"]
        return RuleFound(arn, dict(spec.tags), None if spec.schedule else spec.pattern,
                         "ENABLED", spec.description, spec.schedule)

    # -- teardown --------------------------------------------------------------------

    def owned(self, api: Api, env: str) -> list[RuleFound]:
        """Every rule whose tags name `env`, on every bus: the default bus's included,
        where deploy-process-user-signup puts the relay's schedule."""
        events = api.client("events")
        owned = []
        for bus in _buses(api):
            for rule in pages(events, "list_rules", "Rules", EventBusName=bus["Name"]):
                tags = _tags_or_none(api, rule["Arn"])
                if tags is not None and tags.get(naming.ENV_TAG) == env:
                    owned.append(RuleFound.parse(rule, tags))
        return owned

    def delete(self, api: Api, found: RuleFound,
               options: DeleteOptions = DeleteOptions()) -> None:
        """Every target removed (RemoveTargets, up to 100 ids a call), then DeleteRule. A
        rule already gone is done, and costs no write."""
        events = api.client("events")
        where = {"EventBusName": found.bus}
        if or_none(lambda: events.describe_rule(Name=found.name, **where)) is None:
            return
        ids = [t["Id"] for t in pages(events, "list_targets_by_rule", "Targets",
                                      Rule=found.name, **where)]
        for start in range(0, len(ids), REMOVE_TARGETS_MAX):
            batch = ids[start:start + REMOVE_TARGETS_MAX]
            answer = events.remove_targets(Rule=found.name, Ids=batch, **where)
            # Like PutTargets, RemoveTargets answers 200 when it failed: its FailedEntries.
            if answer.get("FailedEntryCount"):
                failed = answer["FailedEntries"][0]
                raise StepFailed("destroy", self.title(found),
                                 f"RemoveTargets refused target {failed.get('TargetId')}: "
                                 f"{failed.get('ErrorCode')} {failed.get('ErrorMessage')}")
        or_none(lambda: events.delete_rule(Name=found.name, **where))


# -- the rule's target ---------------------------------------------------------------------

@dataclass(frozen=True)
class TargetSpec(Spec):
    """`name` is "<rule>/<target id>"; `tags` are the rule's, which the target is
    claimed by."""

    rule: str = ""
    rule_arn: str = ""
    bus: str = ""
    target_id: str = ""
    arn: str = ""                        # the queue's ARN, or a function's
    max_attempts: int = 185              # RetryPolicy: 0-185
    max_age_seconds: int = 86400         # RetryPolicy: 60-86400
    dead_letter_arn: str = ""            # DeadLetterConfig: a standard SQS queue; "": none

    @property
    def target(self) -> dict:
        """The target as PutTargets takes it and ListTargetsByRule gives it back: no
        RoleArn (AWS warns delivery to a queue may fail with one; a function is invoked
        through its resource policy)."""
        target = {"Id": self.target_id, "Arn": self.arn,
                  "RetryPolicy": {"MaximumRetryAttempts": self.max_attempts,
                                  "MaximumEventAgeInSeconds": self.max_age_seconds}}
        if self.dead_letter_arn:
            target["DeadLetterConfig"] = {"Arn": self.dead_letter_arn}
        return target


@dataclass
class TargetFound(Found):
    """`id` is the target's id; `tags` are its rule's."""

    target: dict = field(default_factory=dict)   # as ListTargetsByRule gives it


class Target(Resource[TargetSpec, TargetFound]):
    kind, service, plural = "events:target", "events", "targets"
    label_id = False
    ops = {"create": "put_targets", "update": "put_targets"}

    def find(self, api: Api, spec: TargetSpec) -> TargetFound | None:
        """By id among the rule's targets (none while the rule does not exist)."""
        targets = or_none(lambda: pages(api.client("events"), "list_targets_by_rule",
                                        "Targets", Rule=spec.rule, EventBusName=spec.bus))
        target = next((t for t in targets or () if t["Id"] == spec.target_id), None)
        if target is None:
            return None
        found = TargetFound(target["Id"], _tags(api, spec.rule_arn), target)
        self.claim(spec, found)
        return found

    def summary(self, spec: TargetSpec) -> dict:
        return {key: value for key, value in spec.target.items() if key != "Id"}

    def diff(self, spec: TargetSpec, found: TargetFound) -> dict:
        """Each top-level field of the target that differs: one the spec does not give
        (RoleArn, Input...) is to go."""
        wanted, diff = spec.target, {}
        for key in sorted(set(wanted) | set(found.target)):
            diff_field(diff, key, found.target.get(key), wanted.get(key))
        return diff

    def owned(self, api: Api, env: str) -> list[TargetFound]:
        """None of its own: a target goes with its rule (Rule.delete)."""
        return []

    def plan(self, spec: TargetSpec, found: TargetFound | None, key: str) -> list[Change]:
        """The base plan without a tag change: a target has no tags (its rule's plan
        adds what the rule lacks)."""
        return [c for c in super().plan(spec, found, key) if c.run.action != "tag"]

    def create(self, api: Api, spec: TargetSpec) -> TargetFound:
        return self._put(api, spec, dict(spec.tags))

    def update(self, api: Api, spec: TargetSpec, found: TargetFound, diff: dict,
               tags: dict) -> TargetFound:
        return self._put(api, spec, found.tags)

    def _put(self, api: Api, spec: TargetSpec, tags: dict) -> TargetFound:
        """PutTargets answers 200 even when it failed to store the target: its
        FailedEntries say so."""
        answer = api.client("events").put_targets(Rule=spec.rule, EventBusName=spec.bus,
                                                  Targets=[spec.target])
        if answer.get("FailedEntryCount"):
            failed = answer["FailedEntries"][0]
            raise StepFailed(spec.step, self.label(spec),
                             f"PutTargets refused it: {failed.get('ErrorCode')} "
                             f"{failed.get('ErrorMessage')}")
        return TargetFound(spec.target_id, tags, spec.target)
