"""Step `deploy-process-user-signup` against in-process moto, after a1, vpc-integrate,
fix-tables (on a real PostgreSQL) and event-bus: the consumer in the private subnets, its
least-privilege role, the SQS event source mapping, and the relay's schedule. What it made
is read back from the account; a second apply makes no mutating call.

No message is sent to the mapped queue: moto runs an enabled mapping synchronously inside
SendMessage, which needs Docker."""

from __future__ import annotations

import json

import boto3
import pytest

from runbook import config as config_mod
from runbook.functions import package, registry
from tests.conftest import REGION
from tests.functional.conftest import run_steps as run

BEFORE = ["network", "database", "store-secrets", "vpc-integrate", "fix-tables", "db-proxy",
          "event-bus"]
STEP = "deploy-process-user-signup"
FUNCTION = "matbakh-cognito-process-user-signup"
RULE = "matbakh-prod-registration-relay"
ACCOUNT = "123456789012"


def with_a4(write_config, mutate=None):
    """prod.yaml with phase a4 cut to the steps this test runs (not registration-test),
    and `mutate` applied."""
    def change(data):
        data["phases"]["a4"] = ["event-bus", STEP]
        if mutate is not None:
            mutate(data)
    return config_mod.load(write_config(change))


def deployed(config, dsn):
    """The steps before STEP (db-proxy only where the file has it), then STEP."""
    before = [s for s in BEFORE if s != "db-proxy" or registry.through_proxy(config)]
    results, _ = run(config, before + [STEP], dsn)
    failed = {n: r.error for n, r in results.items() if r.status != "ok"}
    assert not failed, failed
    return results


def client(service):
    return boto3.client(service, region_name=REGION)


def mapping(queue_arn):
    [found] = client("lambda").list_event_source_mappings(
        FunctionName=FUNCTION, EventSourceArn=queue_arn)["EventSourceMappings"]
    return found


def test_second_apply_makes_no_mutating_call(account, pg_dsn, write_config):
    config = with_a4(write_config)
    first = deployed(config, pg_dsn)
    assert first[STEP].changed
    again, aws = run(config, [STEP], pg_dsn)
    assert again[STEP].status == "ok", again[STEP].error
    assert again[STEP].changes == []
    assert again[STEP].api_calls["write"] == 0 and again[STEP].api_calls["read"] > 0
    assert aws.journal.entries == []


def test_mapping_feeds_batches_with_partial_failures_from_the_signup_queue(
        account, pg_dsn, write_config):
    config = with_a4(write_config)
    results = deployed(config, pg_dsn)
    queue_arn = results["event-bus"].outputs["queue_arn"]
    found = mapping(queue_arn)
    assert found["BatchSize"] == 10
    assert found["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert found["ScalingConfig"] == {"MaximumConcurrency": 2}
    assert found["State"] == "Enabled"
    assert found["FunctionArn"].endswith(f":function:{FUNCTION}")
    outputs = results[STEP].outputs
    assert outputs["mapping_uuid"] == found["UUID"]
    assert (outputs["batch_size"], outputs["max_concurrency"]) == (10, 2)
    assert outputs["code_sha256"] == package.build_function("process_user_signup").sha256


def test_function_runs_in_the_private_subnets_with_its_database_login(
        account, pg_dsn, write_config):
    config = with_a4(write_config)
    results = deployed(config, pg_dsn)
    conf = client("lambda").get_function(FunctionName=FUNCTION)["Configuration"]
    vpc = results["vpc-integrate"].outputs
    assert sorted(conf["VpcConfig"]["SubnetIds"]) == sorted(vpc["subnet_ids"])
    assert conf["VpcConfig"]["SecurityGroupIds"] == [vpc["lambda_security_group_id"]]
    assert (conf["MemorySize"], conf["Timeout"]) == (256, 30)
    # config/prod.yaml has db-proxy: the consumer logs in through it as lambda_writer.
    assert conf["Environment"]["Variables"] == {
        "DB_SCHEMA": "public", "DB_USERS_SCHEMA": "app", "DB_AUDIT_SCHEMA": "audit",
        "DB_AUTH": "iam",
        "DB_HOST": results["db-proxy"].outputs["endpoint"], "DB_PORT": "5432",
        "DB_NAME": "matbakh_main", "DB_USER": "lambda_writer",
        "DB_SSLROOTCERT": "/opt/rds-ca/global-bundle.pem"}


def test_role_may_consume_exactly_the_signup_queue_and_nothing_else(
        account, pg_dsn, write_config):
    config = with_a4(write_config)
    results = deployed(config, pg_dsn)
    policy = client("iam").get_role_policy(RoleName=f"{FUNCTION}-role",
                                           PolicyName="runbook")["PolicyDocument"]
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert sorted(by_sid) == ["ConnectThroughProxy", "ConsumeSignupQueue", "Logs",
                              "VpcNetworkInterfaces"]
    queue = by_sid["ConsumeSignupQueue"]
    assert sorted(queue["Action"]) == ["sqs:DeleteMessage", "sqs:GetQueueAttributes",
                                       "sqs:ReceiveMessage"]
    assert queue["Resource"] == results["event-bus"].outputs["queue_arn"]
    prx = results["db-proxy"].outputs["proxy_arn"].rsplit(":", 1)[-1]
    assert by_sid["ConnectThroughProxy"]["Resource"] == (
        f"arn:aws:rds-db:{REGION}:{ACCOUNT}:dbuser:{prx}/lambda_writer")
    assert not [s for s in policy["Statement"] if "lambda:InvokeFunction" in str(s["Action"])]
    assert client("iam").list_attached_role_policies(
        RoleName=f"{FUNCTION}-role")["AttachedPolicies"] == []


def test_relay_schedule_invokes_the_function_every_five_minutes_from_its_rule_only(
        account, pg_dsn, write_config):
    config = with_a4(write_config)
    results = deployed(config, pg_dsn)
    events = client("events")
    rule = events.describe_rule(Name=RULE)
    assert (rule["ScheduleExpression"], rule["State"]) == ("rate(5 minutes)", "ENABLED")
    assert rule["Arn"] == f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{RULE}"
    assert results[STEP].outputs["relay_rule_arn"] == rule["Arn"]
    function_arn = results[STEP].outputs["function_arn"]
    [target] = events.list_targets_by_rule(Rule=RULE)["Targets"]
    assert (target["Id"], target["Arn"]) == ("relay", function_arn)
    assert "RoleArn" not in target
    policy = json.loads(client("lambda").get_policy(FunctionName=FUNCTION)["Policy"])
    [statement] = policy["Statement"]
    assert statement["Sid"] == "runbook-relay-schedule"
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Condition"] == {"ArnLike": {"AWS:SourceArn": rule["Arn"]},
                                      "StringEquals": {"AWS:SourceAccount": ACCOUNT}}


def test_a_changed_batch_size_and_concurrency_update_only_the_mapping(
        account, pg_dsn, write_config):
    deployed(with_a4(write_config), pg_dsn)
    changed = with_a4(write_config, lambda data: data.update(
        events={"batch_size": 4, "max_concurrency": 5}))

    again, _ = run(changed, [STEP], pg_dsn)

    step = again[STEP]
    assert step.status == "ok", step.error
    assert [(c.action, c.op, c.diff) for c in step.changes] == [
        ("update", "update_event_source_mapping",
         {"batch_size": {"from": 10, "to": 4}, "maximum_concurrency": {"from": 2, "to": 5}})]
    found = client("lambda").list_event_source_mappings(FunctionName=FUNCTION)[
        "EventSourceMappings"]
    assert [(m["BatchSize"], m["ScalingConfig"]) for m in found] == [
        (4, {"MaximumConcurrency": 5})]
    rest, aws = run(changed, [STEP], pg_dsn)
    assert rest[STEP].changes == [] and aws.journal.entries == []


def test_a_timeout_above_the_queues_visibility_is_refused_before_any_write(
        account, pg_dsn, write_config):
    deployed(with_a4(write_config), pg_dsn)
    # The queue keeps 180 s (event-bus does not run again); the consumer's timeout grows.
    longer = with_a4(write_config, lambda data: data["lambdas"].update(
        process_user_signup={"memory_mb": 256, "timeout_s": 200}))

    again, aws = run(longer, [STEP], pg_dsn)

    step = again[STEP]
    assert step.status == "failed" and step.error_kind == "input"
    assert "lambdas.process_user_signup.timeout_s is 200 s" in step.error
    assert "visibility timeout of 180 s" in step.error
    assert aws.journal.entries == []


@pytest.mark.parametrize("field", ["batch_size", "max_concurrency"])
def test_plan_names_the_mapping_setting_it_would_change(account, pg_dsn, write_config, field):
    deployed(with_a4(write_config), pg_dsn)
    value = {"batch_size": 1, "max_concurrency": 1000}[field]
    changed = with_a4(write_config, lambda data: data.update(events={field: value}))
    planned, aws = run(changed, [STEP], pg_dsn, plan_only=True)
    [change] = planned[STEP].changes
    name = {"batch_size": "batch_size", "max_concurrency": "maximum_concurrency"}[field]
    assert change.diff == {name: {"from": {"batch_size": 10, "max_concurrency": 2}[field],
                                  "to": value}}
    assert aws.journal.entries == []


def test_a_second_mapping_for_the_same_queue_is_refused_naming_both(
        account, pg_dsn, write_config):
    # AWS allows one mapping per (function, queue); moto 5.2.5 makes a second one.
    config = with_a4(write_config)
    results = deployed(config, pg_dsn)
    queue_arn = results["event-bus"].outputs["queue_arn"]
    first = mapping(queue_arn)["UUID"]
    second = client("lambda").create_event_source_mapping(
        FunctionName=FUNCTION, EventSourceArn=queue_arn, BatchSize=1)["UUID"]

    again, aws = run(config, [STEP], pg_dsn)

    step = again[STEP]
    assert step.status == "failed" and step.error_kind == "input"
    assert "AWS allows one" in step.error
    assert first in step.error and second in step.error
    assert aws.journal.entries == []


def test_the_mapping_waits_for_the_roles_new_queue_rights_to_propagate(
        account, pg_dsn, write_config):
    """Right after the role gets ConsumeSignupQueue, Lambda may refuse the mapping until
    IAM has propagated it (moto never does): the create is sent again, within
    IAM_PROPAGATION, and the step succeeds with one mapping."""
    from botocore.exceptions import ClientError

    from runbook.aws.clients import ClientFactory
    from runbook.output.progress import Progress
    from runbook.steps import new_runner

    config = with_a4(write_config)
    run(config, BEFORE, pg_dsn)
    refused = []

    def not_yet(service, operation, write):
        if operation == "CreateEventSourceMapping" and len(refused) < 2:
            refused.append(operation)
            raise ClientError({"Error": {
                "Code": "InvalidParameterValueException",
                "Message": "The provided execution role does not have permissions to call "
                           "ReceiveMessage on SQS"}}, operation)

    aws = ClientFactory(REGION, interceptors=[not_yet])
    slept = []
    runner = new_runner(config, aws, Progress(quiet=True), dry_run=True, database_dsn=pg_dsn,
                        sleep=slept.append)
    [result] = runner.run([STEP])
    assert result.status == "ok", result.error
    assert len(refused) == 2 and slept[:2] == [1, 2]
    assert len(client("lambda").list_event_source_mappings(
        FunctionName=FUNCTION)["EventSourceMappings"]) == 1
