"""Step `event-bus` (phase a4): where a confirmed user's `user.registered` event goes.

A custom bus; a rule matching SOURCE and DETAIL_TYPE; its target, the signup queue, with a
RetryPolicy and a DeadLetterConfig and no RoleArn; the queue and its dead-letter queue,
both SSE-SQS, the DLQ made first and kept longer, the queue redriving to it after 5
receives; on both, a policy that admits events.amazonaws.com for this rule only; alarms
on the DLQ's depth and on the consumer's errors (runbook.resources.event_bus, queue,
alarm).

The ARNs are known before anything exists (the account is read in `read`), so the
queue policies name the rule before it is made. Names derive from the environment file
(network.name; the consumer's through Config.function_name): the step needs no setting of its own yet.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from runbook.aws import naming
from runbook.engine import UNKNOWN, Change, Outputs, Step
from runbook.resources.alarm import Alarm, AlarmSpec
from runbook.resources.base import Inventory
from runbook.resources.event_bus import (EventBus, EventBusSpec, Rule, RuleSpec, Target,
                                         TargetSpec, bus_arn, rule_arn)
from runbook.resources.queue import Queue, QueueSpec, events_policy, queue_arn, redrive

STEP_NAME = "event-bus"
# What post_confirmation publishes: a Source outside aws.*, and the detail type.
SOURCE, DETAIL_TYPE = "runbook.registration", "user.registered"
CONSUMER = "process_user_signup"                 # its function (lambdas/<CONSUMER>)
# The queue's visibility timeout is this many times the consumer's timeout
# (lambdas.<CONSUMER>.timeout_s): a batch being processed stays invisible until the
# function has timed out, with room for Lambda's retries (AWS-FACTS A); Lambda refuses a
# mapping whose function's timeout is above it.
VISIBILITY_FACTOR = 6
QUEUE_RETENTION_S, DLQ_RETENTION_S = 4 * 86400, 14 * 86400
MAX_RECEIVE_COUNT = 5
RETRY_ATTEMPTS, RETRY_MAX_AGE_S = 185, 86400     # EventBridge's limits, said out loud
TARGET_ID = "signup-queue"
FIELD = "network.name"                           # the names derive from it

BUS, QUEUE, RULE, TARGET, ALARM = EventBus(), Queue(), Rule(), Target(), Alarm()
# Keys of the inventory, in the order they are planned.
KEYS = ("bus", "dlq", "queue", "rule", "target", "dlq-alarm", "errors-alarm")


@dataclass(frozen=True)
class EventBusOutputs(Outputs):
    bus_name: str
    bus_arn: str
    source: str
    detail_type: str
    rule_arn: str
    queue_url: str
    queue_arn: str
    dead_letter_queue_url: str
    dead_letter_queue_arn: str
    consumer_function: str
    alarms: tuple
    # The queue's visibility timeout: what this step makes it (6x the consumer's
    # timeout), or, read only for outputs, what the queue has.
    visibility_timeout_s: int


@dataclass
class EventBusState(Inventory):
    """found: KEYS. `account` names the ARNs (None when read only for outputs)."""

    account: str | None = None


class EventBusStep(Step):
    name = STEP_NAME

    # -- what the step wants ---------------------------------------------------------

    def names(self) -> dict[str, str]:
        prefix = self.config.network.name
        queue = f"{prefix}-user-signup"
        consumer = self.config.function_name(CONSUMER)
        return {"bus": naming.event_bus_name(self.config), "rule": naming.registration_rule_name(self.config),
                "queue": queue, "dlq": f"{queue}-dlq", "consumer": consumer,
                "dlq-alarm": f"{queue}-dlq-depth", "errors-alarm": f"{consumer}-errors"}

    def arns(self, account) -> dict[str, str]:
        names, region = self.names(), self.ctx.aws.region
        if account is None:
            return {key: UNKNOWN for key in ("bus", "rule", "queue", "dlq")}
        return {"bus": bus_arn(region, account, names["bus"]),
                "rule": rule_arn(region, account, names["bus"], names["rule"]),
                "queue": queue_arn(region, account, names["queue"]),
                "dlq": queue_arn(region, account, names["dlq"])}

    def specs(self, account) -> dict:
        """{key: (resource, spec)} in plan order."""
        names, arn = self.names(), self.arns(account)

        def tags(name: str) -> dict:
            return naming.tags(self.config, STEP_NAME, name)

        visibility = self.visibility_timeout()
        rule_tags = tags(names["rule"])
        return {
            "bus": (BUS, EventBusSpec(names["bus"], tags(names["bus"]), FIELD)),
            "dlq": (QUEUE, QueueSpec(names["dlq"], tags(names["dlq"]), FIELD, arn=arn["dlq"],
                                     visibility_timeout=visibility,
                                     retention_seconds=DLQ_RETENTION_S,
                                     policy=events_policy(arn["dlq"], arn["rule"]))),
            "queue": (QUEUE, QueueSpec(names["queue"], tags(names["queue"]), FIELD,
                                       arn=arn["queue"], visibility_timeout=visibility,
                                       retention_seconds=QUEUE_RETENTION_S,
                                       redrive=redrive(arn["dlq"], MAX_RECEIVE_COUNT),
                                       policy=events_policy(arn["queue"], arn["rule"]))),
            "rule": (RULE, RuleSpec(names["rule"], rule_tags, FIELD, arn=arn["rule"],
                                    bus=names["bus"],
                                    pattern={"source": [SOURCE], "detail-type": [DETAIL_TYPE]},
                                    description=f"{DETAIL_TYPE} to {names['queue']}")),
            "target": (TARGET, TargetSpec(f"{names['rule']}/{TARGET_ID}", rule_tags, FIELD,
                                          rule=names["rule"], rule_arn=arn["rule"],
                                          bus=names["bus"], target_id=TARGET_ID,
                                          arn=arn["queue"], max_attempts=RETRY_ATTEMPTS,
                                          max_age_seconds=RETRY_MAX_AGE_S,
                                          dead_letter_arn=arn["dlq"])),
            "dlq-alarm": (ALARM, AlarmSpec(
                names["dlq-alarm"], tags(names["dlq-alarm"]), FIELD, namespace="AWS/SQS",
                metric="ApproximateNumberOfMessagesVisible",
                dimensions={"QueueName": names["dlq"]}, statistic="Maximum",
                description=f"registrations dead-lettered in {names['dlq']}")),
            "errors-alarm": (ALARM, AlarmSpec(
                names["errors-alarm"], tags(names["errors-alarm"]), FIELD,
                namespace="AWS/Lambda", metric="Errors",
                dimensions={"FunctionName": names["consumer"]}, statistic="Sum",
                description=f"{names['consumer']} failed")),
        }

    def visibility_timeout(self) -> int:
        return VISIBILITY_FACTOR * self.config.lambdas.settings(CONSUMER).timeout_s

    # -- read ------------------------------------------------------------------------

    def read(self) -> EventBusState:
        # Names are all find needs, and the rule's ARN, which the target is claimed by
        # (through the rule's tags), comes from the rule found; the account (the ARNs the
        # specs carry) only the plan needs.
        found: dict = {}
        for key, (resource, spec) in self.specs(None).items():
            if key == "target":
                rule = found["rule"]
                spec = dataclasses.replace(spec, rule_arn=rule.id) if rule else None
            found[key] = resource.find(self.api, spec) if spec else None
        account = None if self.ctx.outputs_only else self.api.account()
        return self.state(account, found)

    def state(self, account: str | None, found: dict) -> EventBusState:
        """What was read, keyed for the plan: pure, so that plans are tested from data."""
        return EventBusState(found={key: found.get(key) for key in KEYS}, account=account)

    # -- plan ------------------------------------------------------------------------

    def plan(self, state: EventBusState) -> list[Change]:
        return [change for key, (resource, spec) in self.specs(state.account).items()
                for change in resource.plan(spec, state.found.get(key), key)]

    # -- outputs -------------------------------------------------------------------------

    def outputs(self, state: EventBusState) -> EventBusOutputs:
        names, arn = self.names(), self.arns(state.account)
        queue, dlq = state.found.get("queue"), state.found.get("dlq")
        bus, rule = state.found.get("bus"), state.found.get("rule")
        return EventBusOutputs(
            bus_name=names["bus"], bus_arn=bus.id if bus else arn["bus"],
            source=SOURCE, detail_type=DETAIL_TYPE,
            rule_arn=rule.id if rule else arn["rule"],
            queue_url=queue.id if queue else UNKNOWN,
            queue_arn=queue.arn if queue else arn["queue"],
            dead_letter_queue_url=dlq.id if dlq else UNKNOWN,
            dead_letter_queue_arn=dlq.arn if dlq else arn["dlq"],
            consumer_function=names["consumer"],
            alarms=(names["dlq-alarm"], names["errors-alarm"]),
            # Planned (account known), the queue has, or is about to have, the wanted
            # timeout; read only for outputs (account None), what it has now is the
            # truth a consumer's plan checks against.
            visibility_timeout_s=(queue.visibility_timeout if queue and state.account is None
                                  else self.visibility_timeout()))


STEP = EventBusStep
