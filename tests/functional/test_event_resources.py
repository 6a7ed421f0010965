"""The event path's resources against in-process moto: the bus, the rule and its SQS
target, the queue and its dead-letter queue, the alarms. Each is made from nothing,
then a second plan is empty and a second apply makes no mutating call; a drifted
setting plans one update that converges; another environment's is refused. What they
made is read back from the account with boto3, since moto checks none of it (a queue
policy least of all)."""

from __future__ import annotations

import dataclasses
import json

import boto3
import pytest

from runbook.aws.api import Api
from runbook.aws.clients import ClientFactory
from runbook.aws.naming import ENV_TAG, STEP_TAG
from runbook.errors import OwnedElsewhere
from runbook.resources.alarm import Alarm, AlarmSpec
from runbook.resources.base import Inventory
from runbook.resources.event_bus import (EventBus, EventBusSpec, Rule, RuleSpec, Target,
                                         TargetSpec, rule_arn)
from runbook.resources.queue import Queue, QueueSpec, events_policy, queue_arn, redrive
from tests.conftest import REGION

STEP = "event-bus"
BUS, RULE = "matbakh-prod-events", "matbakh-prod-user-registered"
QUEUE, DLQ = "matbakh-prod-user-signup", "matbakh-prod-user-signup-dlq"
FUNCTION = "matbakh-prod-process-user-signup"
SOURCE, DETAIL_TYPE = "matbakh.auth", "user.registered"
VISIBILITY = 6 * 30                      # 6 x the consumer's timeout
QUEUE_RETENTION, DLQ_RETENTION = 4 * 86400, 14 * 86400


def tags(name: str, env: str) -> dict:
    return {"Name": name, ENV_TAG: env, STEP_TAG: STEP}


def account_id() -> str:
    return boto3.client("sts", region_name=REGION).get_caller_identity()["Account"]


def arns() -> dict:
    acct = account_id()
    return {"rule": rule_arn(REGION, acct, BUS, RULE), "queue": queue_arn(REGION, acct, QUEUE),
            "dlq": queue_arn(REGION, acct, DLQ)}


def event_path(env: str = "prod") -> list[tuple]:
    """(resource, spec, key) for the whole path, in the order a step would plan it: the
    DLQ before the queue whose redrive names it."""
    arn = arns()
    rule_tags = tags(RULE, env)
    return [
        (EventBus(), EventBusSpec(BUS, tags(BUS, env), "events.bus"), "bus"),
        (Queue(), QueueSpec(DLQ, tags(DLQ, env), "events.dead_letter_queue", arn=arn["dlq"],
                            visibility_timeout=VISIBILITY, retention_seconds=DLQ_RETENTION,
                            policy=events_policy(arn["dlq"], arn["rule"])), "dlq"),
        (Queue(), QueueSpec(QUEUE, tags(QUEUE, env), "events.queue", arn=arn["queue"],
                            visibility_timeout=VISIBILITY, retention_seconds=QUEUE_RETENTION,
                            redrive=redrive(arn["dlq"]),
                            policy=events_policy(arn["queue"], arn["rule"])), "queue"),
        (Rule(), RuleSpec(RULE, rule_tags, "events.rule", arn=arn["rule"], bus=BUS,
                          pattern={"source": [SOURCE], "detail-type": [DETAIL_TYPE]},
                          description="user.registered to the signup queue"), "rule"),
        (Target(), TargetSpec(f"{RULE}/signup-queue", rule_tags, "events.rule", rule=RULE,
                              rule_arn=arn["rule"], bus=BUS, target_id="signup-queue",
                              arn=arn["queue"], max_attempts=20, max_age_seconds=3600,
                              dead_letter_arn=arn["dlq"]), "target"),
        (Alarm(), AlarmSpec(f"{DLQ}-depth", tags(f"{DLQ}-depth", env), "events.alarms",
                            namespace="AWS/SQS", metric="ApproximateNumberOfMessagesVisible",
                            dimensions={"QueueName": DLQ}, statistic="Maximum",
                            description="messages in the signup dead-letter queue"),
         "dlq-alarm"),
        (Alarm(), AlarmSpec(f"{FUNCTION}-errors", tags(f"{FUNCTION}-errors", env),
                            "events.alarms", namespace="AWS/Lambda", metric="Errors",
                            dimensions={"FunctionName": FUNCTION}, statistic="Sum",
                            description="process-user-signup failed"), "errors-alarm"),
    ]


def plan(items):
    """Read each resource with a fresh factory, as a separate run would, then plan with
    every AWS call refused (a plan is pure): (factory, api, inventory, changes)."""
    aws = ClientFactory(REGION)
    api = Api(aws, sleep=lambda s: None)
    inventory = Inventory()
    for resource, spec, key in items:
        inventory.found[key] = resource.find(api, spec)
    with aws.refusing("plan"):
        changes = [c for resource, spec, key in items for c in resource.plan(spec,
                                                                            inventory.found[key], key)]
    return aws, api, inventory, changes


def apply(items):
    """plan, then run every change: (changes, factory)."""
    aws, api, inventory, changes = plan(items)
    for change in changes:
        change.run(api, inventory, **change.args)
    return changes, aws


@pytest.fixture
def made(account):
    """The whole path applied from nothing: (changes, factory)."""
    return apply(event_path())


def sqs():
    return boto3.client("sqs", region_name=REGION)


def events():
    return boto3.client("events", region_name=REGION)


def cloudwatch():
    return boto3.client("cloudwatch", region_name=REGION)


def attributes(name: str) -> dict:
    url = sqs().get_queue_url(QueueName=name)["QueueUrl"]
    return sqs().get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]


# -- from nothing ---------------------------------------------------------------------------

def test_from_nothing_each_resource_is_made_once_in_order(made):
    changes, aws = made
    assert [(c.action, c.resource, c.op) for c in changes] == [
        ("create", f"events:event-bus {BUS}", "create_event_bus"),
        ("create", f"sqs:queue {DLQ}", "create_queue"),
        ("create", f"sqs:queue {QUEUE}", "create_queue"),
        ("create", f"events:rule {RULE}", "put_rule"),
        ("create", f"events:target {RULE}/signup-queue", "put_targets"),
        ("create", f"cloudwatch:alarm {DLQ}-depth", "put_metric_alarm"),
        ("create", f"cloudwatch:alarm {FUNCTION}-errors", "put_metric_alarm")]
    # Tags go in the creating call: nothing runbook makes is ever untagged.
    assert sorted(e["call"] for e in aws.journal.entries) == [
        "cloudwatch:PutMetricAlarm", "cloudwatch:PutMetricAlarm", "events:CreateEventBus",
        "events:PutRule", "events:PutTargets", "sqs:CreateQueue", "sqs:CreateQueue"]


def test_a_second_plan_is_empty_and_a_second_apply_makes_no_mutating_call(made):
    changes, aws = apply(event_path())

    assert changes == []
    assert aws.total("write") == 0
    assert aws.total("read") > 0         # it did look


def test_create_diffs_show_the_settings_a_reader_checks(account):
    _, _, _, changes = plan(event_path())
    queue = next(c for c in changes if c.resource == f"sqs:queue {QUEUE}")
    assert queue.diff == {
        "visibility_timeout": VISIBILITY, "retention_seconds": QUEUE_RETENTION,
        "encryption": "SSE-SQS", "redrive": redrive(arns()["dlq"]),
        "policy": [f"allow events.amazonaws.com sqs:SendMessage on {arns()['queue']} "
                   f"if ArnEquals aws:SourceArn {arns()['rule']}"]}
    alarm = next(c for c in changes if c.resource == f"cloudwatch:alarm {DLQ}-depth")
    assert alarm.describe() == (
        f"+ cloudwatch:alarm {DLQ}-depth (metric: AWS/SQS ApproximateNumberOfMessagesVisible "
        f"{{'QueueName': '{DLQ}'}}, when: Maximum GreaterThanThreshold 0 over 1 x 60s)")


# -- read back from the account -----------------------------------------------------------

def test_the_queues_are_encrypted_redriven_and_admit_only_this_rule(made):
    arn = arns()
    queue, dlq = attributes(QUEUE), attributes(DLQ)
    for attrs, own in ((queue, arn["queue"]), (dlq, arn["dlq"])):
        assert attrs["SqsManagedSseEnabled"] == "true"
        assert "KmsMasterKeyId" not in attrs
        [statement] = json.loads(attrs["Policy"])["Statement"]
        assert statement == {"Sid": "events", "Effect": "Allow",
                             "Principal": {"Service": "events.amazonaws.com"},
                             "Action": "sqs:SendMessage", "Resource": own,
                             "Condition": {"ArnEquals": {"aws:SourceArn": arn["rule"]}}}
    assert json.loads(queue["RedrivePolicy"]) == {"deadLetterTargetArn": arn["dlq"],
                                                  "maxReceiveCount": 5}
    assert "RedrivePolicy" not in dlq
    assert int(queue["VisibilityTimeout"]) == VISIBILITY
    assert int(dlq["MessageRetentionPeriod"]) > int(queue["MessageRetentionPeriod"])


def test_the_rule_matches_source_and_detail_type_and_its_target_has_no_role(made):
    arn = arns()
    rule = events().describe_rule(Name=RULE, EventBusName=BUS)
    assert json.loads(rule["EventPattern"]) == {"source": [SOURCE],
                                               "detail-type": [DETAIL_TYPE]}
    assert rule["State"] == "ENABLED" and rule["Arn"] == arn["rule"]
    [target] = events().list_targets_by_rule(Rule=RULE, EventBusName=BUS)["Targets"]
    assert "RoleArn" not in target
    assert target["Arn"] == arn["queue"]
    assert target["RetryPolicy"] == {"MaximumRetryAttempts": 20,
                                     "MaximumEventAgeInSeconds": 3600}
    assert target["DeadLetterConfig"] == {"Arn": arn["dlq"]}


def test_a_matching_event_reaches_the_queue_and_another_does_not(made):
    client = events()
    for source in (SOURCE, "someone.else"):
        answer = client.put_events(Entries=[{"EventBusName": BUS, "Source": source,
                                             "DetailType": DETAIL_TYPE,
                                             "Detail": json.dumps({"sub": source})}])
        assert answer["FailedEntryCount"] == 0
    url = sqs().get_queue_url(QueueName=QUEUE)["QueueUrl"]
    messages = sqs().receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert [json.loads(m["Body"])["detail"] for m in messages] == [{"sub": SOURCE}]


def test_the_alarms_watch_the_dlq_depth_and_the_consumers_errors(made):
    alarms = {a["AlarmName"]: a for a in cloudwatch().describe_alarms(
        AlarmNamePrefix="matbakh-prod")["MetricAlarms"]}
    dlq, errors = alarms[f"{DLQ}-depth"], alarms[f"{FUNCTION}-errors"]
    assert (dlq["Namespace"], dlq["MetricName"], dlq["Dimensions"]) == (
        "AWS/SQS", "ApproximateNumberOfMessagesVisible", [{"Name": "QueueName", "Value": DLQ}])
    assert (errors["Namespace"], errors["MetricName"], errors["Dimensions"]) == (
        "AWS/Lambda", "Errors", [{"Name": "FunctionName", "Value": FUNCTION}])
    for alarm in (dlq, errors):
        assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (0.0, "GreaterThanThreshold")
        listed = cloudwatch().list_tags_for_resource(ResourceARN=alarm["AlarmArn"])["Tags"]
        assert {"Key": ENV_TAG, "Value": "prod"} in listed


# -- drift ------------------------------------------------------------------------------------

def url(name):
    return sqs().get_queue_url(QueueName=name)["QueueUrl"]


def set_attributes(name, **changed):
    """SetQueueAttributes as someone else would call it on AWS, where what it does not
    name stays. moto drops the policy of a call without one, so it is sent along."""
    policy = attributes(name).get("Policy")
    sqs().set_queue_attributes(QueueUrl=url(name),
                               Attributes={**changed, **({"Policy": policy} if policy else {})})


def other_policy():
    """The queue's policy admitting any rule, not this one (the condition dropped)."""
    policy = events_policy(arns()["queue"], arns()["rule"])
    del policy["Statement"][0]["Condition"]
    return policy


def drifts() -> dict:
    """{name: (how to drift, the resource, its op, the diff expected)}: built in the
    emulated account, whose id the ARNs carry."""
    queue = arns()["queue"]
    return {
        "visibility": (lambda: set_attributes(QUEUE, VisibilityTimeout="30"),
            f"sqs:queue {QUEUE}", "set_queue_attributes",
            {"visibility_timeout": {"from": 30, "to": VISIBILITY}}),
        "dlq-retention": (lambda: set_attributes(
            DLQ, MessageRetentionPeriod=str(QUEUE_RETENTION)),
            f"sqs:queue {DLQ}", "set_queue_attributes",
            {"retention_seconds": {"from": QUEUE_RETENTION, "to": DLQ_RETENTION}}),
        "redrive": (lambda: set_attributes(QUEUE, RedrivePolicy=json.dumps(
            {"deadLetterTargetArn": arns()["dlq"], "maxReceiveCount": "50"})),
            f"sqs:queue {QUEUE}", "set_queue_attributes",
            {"redrive": {"from": redrive(arns()["dlq"], 50), "to": redrive(arns()["dlq"])}}),
        "policy": (lambda: sqs().set_queue_attributes(
            QueueUrl=url(QUEUE), Attributes={"Policy": json.dumps(other_policy())}),
            f"sqs:queue {QUEUE}", "set_queue_attributes",
            {"policy": {"from": [f"allow events.amazonaws.com sqs:SendMessage on {queue}"],
                        "to": [f"allow events.amazonaws.com sqs:SendMessage on {queue} "
                               f"if ArnEquals aws:SourceArn {arns()['rule']}"]}}),
        "pattern": (lambda: events().put_rule(
            Name=RULE, EventBusName=BUS, State="ENABLED",
            Description="user.registered to the signup queue",
            EventPattern=json.dumps({"source": [SOURCE]})),
            f"events:rule {RULE}", "put_rule",
            {"pattern": {"from": {"source": [SOURCE]},
                         "to": {"source": [SOURCE], "detail-type": [DETAIL_TYPE]}}}),
        "target": (lambda: events().put_targets(Rule=RULE, EventBusName=BUS, Targets=[{
            "Id": "signup-queue", "Arn": arns()["queue"],
            "RoleArn": f"arn:aws:iam::{account_id()}:role/someone",
            "RetryPolicy": {"MaximumRetryAttempts": 20, "MaximumEventAgeInSeconds": 3600},
            "DeadLetterConfig": {"Arn": arns()["dlq"]}}]),
            f"events:target {RULE}/signup-queue", "put_targets",
            {"RoleArn": {"from": f"arn:aws:iam::{account_id()}:role/someone", "to": None}}),
        "threshold": (lambda: cloudwatch().put_metric_alarm(
            AlarmName=f"{DLQ}-depth", AlarmDescription="messages in the signup dead-letter queue",
            Namespace="AWS/SQS", MetricName="ApproximateNumberOfMessagesVisible",
            Dimensions=[{"Name": "QueueName", "Value": DLQ}], Statistic="Maximum", Period=60,
            EvaluationPeriods=1, Threshold=5.0, ComparisonOperator="GreaterThanThreshold",
            TreatMissingData="notBreaching", ActionsEnabled=True, AlarmActions=[]),
            f"cloudwatch:alarm {DLQ}-depth", "put_metric_alarm",
            {"threshold": {"from": 5.0, "to": 0.0}}),
    }


DRIFT_NAMES = ["dlq-retention", "pattern", "policy", "redrive", "target", "threshold",
               "visibility"]


@pytest.mark.parametrize("drift", DRIFT_NAMES)
def test_a_drifted_setting_plans_one_update_that_converges(made, drift):
    change_it, resource, op, diff = drifts()[drift]
    change_it()

    changes, aws = apply(event_path())

    assert [(c.action, c.resource, c.op, c.diff) for c in changes] == [
        ("update", resource, op, diff)]
    assert aws.total("write") == 1
    again, aws = apply(event_path())
    assert again == [] and aws.total("write") == 0


def test_a_drifted_queue_policy_is_put_back_as_data(made):
    """moto delivers whatever the policy says: only runbook's read-back restores it."""
    drifts()["policy"][0]()
    apply(event_path())
    [statement] = json.loads(attributes(QUEUE)["Policy"])["Statement"]
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": arns()["rule"]}}


def test_a_target_with_a_role_loses_it(made):
    drifts()["target"][0]()
    apply(event_path())
    [target] = events().list_targets_by_rule(Rule=RULE, EventBusName=BUS)["Targets"]
    assert "RoleArn" not in target


# -- ownership and adoption -------------------------------------------------------------

@pytest.mark.parametrize("key", ["bus", "dlq", "queue", "rule", "target", "dlq-alarm",
                                 "errors-alarm"])
def test_another_environments_resource_is_refused(account, key):
    apply(event_path("staging"))         # a copied file that kept prod's names
    resource, spec, _ = next(item for item in event_path() if item[2] == key)
    api = Api(ClientFactory(REGION))

    with pytest.raises(OwnedElsewhere) as refused:
        resource.find(api, spec)

    assert refused.value.owner == "staging" and refused.value.field == spec.field


def test_untagged_queues_bus_and_rule_are_adopted_and_tagged(account):
    """Made before runbook (by hand): tagged, not made again, and then left alone."""
    arn = arns()
    events().create_event_bus(Name=BUS)
    sqs().create_queue(QueueName=DLQ, Attributes={
        "VisibilityTimeout": str(VISIBILITY), "MessageRetentionPeriod": str(DLQ_RETENTION),
        "SqsManagedSseEnabled": "true",
        "Policy": json.dumps(events_policy(arn["dlq"], arn["rule"]))})
    sqs().create_queue(QueueName=QUEUE, Attributes={
        "VisibilityTimeout": str(VISIBILITY), "MessageRetentionPeriod": str(QUEUE_RETENTION),
        "SqsManagedSseEnabled": "true", "RedrivePolicy": json.dumps(redrive(arn["dlq"])),
        "Policy": json.dumps(events_policy(arn["queue"], arn["rule"]))})
    events().put_rule(Name=RULE, EventBusName=BUS, State="ENABLED",
                      Description="user.registered to the signup queue",
                      EventPattern=json.dumps({"detail-type": [DETAIL_TYPE],
                                               "source": [SOURCE]}))
    wanted = [item for item in event_path() if item[2] in ("bus", "dlq", "queue", "rule")]

    changes, _ = apply(wanted)

    assert [(c.resource, c.op, sorted(c.diff["tags"]["to"])) for c in changes] == [
        (f"events:event-bus {BUS}", "tag_event_bus", ["Name", ENV_TAG, STEP_TAG]),
        (f"sqs:queue {DLQ}", "tag_queue", ["Name", ENV_TAG, STEP_TAG]),
        (f"sqs:queue {QUEUE}", "tag_queue", ["Name", ENV_TAG, STEP_TAG]),
        (f"events:rule {RULE}", "tag_rule", ["Name", ENV_TAG, STEP_TAG])]
    assert sqs().list_queue_tags(QueueUrl=url(QUEUE))["Tags"][ENV_TAG] == "prod"
    again, aws = apply(wanted)
    assert again == [] and aws.total("write") == 0


def test_a_kms_encrypted_queue_is_refused_with_the_fix(account):
    sqs().create_queue(QueueName=DLQ, Attributes={"KmsMasterKeyId": "alias/someone"},
                       tags=tags(DLQ, "prod"))
    from runbook.errors import PlanError

    with pytest.raises(PlanError, match="KMS key alias/someone.*events.dead_letter_queue"):
        plan(event_path()[:2])


def test_a_retried_bus_create_takes_the_bus_it_made(account):
    """CreateEventBus is not an upsert: a create whose answer was lost, sent again,
    hears that the bus exists. It takes it (it is this environment's), tags and all."""
    resource, spec, _ = event_path()[0]
    api = Api(ClientFactory(REGION))
    first = resource.create(api, spec)

    again = resource.create(api, spec)

    assert again.id == first.id and again.tags == spec.tags


def test_a_bus_another_environment_made_meanwhile_is_not_taken(account):
    resource, spec, _ = event_path()[0]
    events().create_event_bus(Name=BUS, Tags=[{"Key": ENV_TAG, "Value": "staging"}])

    with pytest.raises(OwnedElsewhere):
        resource.create(Api(ClientFactory(REGION)), spec)


def test_specs_are_frozen_data(account):
    """A plan's specs are data the engine may resolve and copy."""
    for _, spec, _ in event_path():
        assert dataclasses.replace(spec) == spec


# -- step event-bus -------------------------------------------------------------------------

def test_step_event_bus_converges_and_a_rerun_writes_nothing(account, write_config):
    """In a phase of its own (prod.yaml does not list it yet)."""
    from runbook import config as config_mod
    from tests.functional.conftest import run_steps

    config = config_mod.load(write_config(
        lambda data: data["phases"].update({"a4": ["event-bus"]})))
    results, aws = run_steps(config, ["event-bus"])
    step = results["event-bus"]
    assert step.status == "ok", step.error
    assert aws.total("write") == 7
    outputs = step.outputs
    url = sqs().get_queue_url(QueueName="matbakh-prod-user-signup")["QueueUrl"]
    assert (outputs["queue_url"], outputs["source"]) == (url, "runbook.registration")
    [target] = events().list_targets_by_rule(Rule="matbakh-prod-user-registered",
                                             EventBusName=outputs["bus_name"])["Targets"]
    assert target["Arn"] == outputs["queue_arn"] and "RoleArn" not in target
    assert target["DeadLetterConfig"] == {"Arn": outputs["dead_letter_queue_arn"]}

    again, aws = run_steps(config, ["event-bus"])
    assert again["event-bus"].status == "ok" and again["event-bus"].changes == []
    assert aws.total("write") == 0
