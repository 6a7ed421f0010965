"""The teardown contract (owned, delete, gone) of the application kinds, against
in-process moto: functions and their permissions, event source mappings, layer
versions, roles, log groups, alarms, queues, buses and rules, user pools.

For each kind, resources are made for environment "staging" through the kind's own
`create` (and one for "prod"); `owned(api, "staging")` returns exactly staging's, with
their tags, adopted ones included; `delete` removes it (read back with plain boto3),
`gone` is then True, a second `delete` makes no mutating call, and prod's is untouched.
Where moto is laxer than AWS (Cognito deletion protection, a mapping's Deleting state),
the tests prove the call AWS needs was made, or show AWS's answer, instead of relying on
moto to refuse.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile

import boto3
import pytest

from runbook.aws.api import Api
from runbook.aws.clients import ClientFactory
from runbook.aws.naming import CREATED_TAG, ENV_TAG, STEP_TAG
from runbook.functions import package
from runbook.functions.package import Artifact
from runbook.resources import user_pool
from runbook.resources.alarm import Alarm, AlarmSpec
from runbook.resources.event_bus import (DEFAULT_BUS, EventBus, EventBusSpec, Rule, RuleSpec,
                                         Target, TargetSpec, rule_arn)
from runbook.resources.event_source_mapping import EventSourceMapping, MappingSpec
from runbook.resources.iam_role import Role, RoleSpec
from runbook.resources.lambda_function import (InvokePermission, LambdaFunction, LambdaSpec,
                                               PermissionSpec)
from runbook.resources.lambda_layer import LayerSpec, LayerVersion
from runbook.resources.log_group import LogGroup, LogGroupSpec
from runbook.resources.queue import Queue, QueueSpec, queue_arn
from runbook.resources.user_pool import (AppClient, AppClientSpec, UserPool, UserPoolSpec,
                                         attribute_schema, without_triggers)
from tests.conftest import REGION

TRUST = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                 "Principal": {"Service": "lambda.amazonaws.com"}}]}
POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sqs:SendMessage",
                                                  "Resource": "*"}]}


def tags(name: str, env: str, step: str, *, created: bool = True) -> dict:
    """What runbook puts on what it makes (created) or adopts (no runbook:created)."""
    out = {"Name": name, ENV_TAG: env, STEP_TAG: step}
    return {**out, CREATED_TAG: "true"} if created else out



def counted(aws: ClientFactory, call) -> tuple:
    """(how many mutating calls `call()` made, what it returned)."""
    before = aws.total("write")
    result = call()
    return aws.total("write") - before, result


def writes(aws: ClientFactory, call) -> int:
    return counted(aws, call)[0]


def client(service: str):
    return boto3.client(service, region_name=REGION)


def account() -> str:
    return client("sts").get_caller_identity()["Account"]


def ids(found: list) -> list[str]:
    return sorted(f.id for f in found)


# -- functions and their permissions ----------------------------------------------------------

def _zip() -> bytes:
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return None\n")
    return data.getvalue()


def execution_role() -> str:
    return client("iam").create_role(RoleName="fn-role",
                                     AssumeRolePolicyDocument=json.dumps(TRUST))["Role"]["Arn"]


def make_function(api: Api, name: str, env: str, role: str, *, created: bool = True):
    data = _zip()
    code = Artifact(data, base64.b64encode(hashlib.sha256(data).digest()).decode(),
                    ("handler.py",))
    return LambdaFunction().create(api, LambdaSpec(
        name, tags(name, env, "deploy-post-confirmation", created=created), "lambdas",
        folder="post_confirmation", code=code, runtime="python3.11", role_arn=role))


def test_functions_owned_are_the_environments_created_and_adopted_with_their_tags(aws, api):
    role = execution_role()
    made = make_function(api, "matbakh-staging-post-confirmation", "staging", role)
    adopted = make_function(api, "matbakh-staging-legacy", "staging", role, created=False)
    make_function(api, "matbakh-prod-post-confirmation", "prod", role)

    owned = LambdaFunction().owned(api, "staging")

    assert ids(owned) == sorted([made.id, adopted.id])
    by_id = {f.id: f for f in owned}
    assert by_id[made.id].tags == tags("matbakh-staging-post-confirmation", "staging",
                                       "deploy-post-confirmation")
    assert CREATED_TAG not in by_id[adopted.id].tags
    # Its id is an ARN, which the name says all of.
    assert LambdaFunction().title(by_id[made.id]) == \
        "lambda:function matbakh-staging-post-confirmation"


def test_a_function_is_deleted_with_its_permission_and_a_second_delete_writes_nothing(aws, api):
    role = execution_role()
    made = make_function(api, "matbakh-staging-pre-signup", "staging", role)
    prod = make_function(api, "matbakh-prod-pre-signup", "prod", role)
    pool_arn = f"arn:aws:cognito-idp:{REGION}:{account()}:userpool/{REGION}_abc"
    InvokePermission().create(api, PermissionSpec(
        "matbakh-staging-pre-signup/cognito", {}, "lambdas", function=made.name,
        function_arn=made.id, statement_id="cognito", principal="cognito-idp.amazonaws.com",
        source_arn=pool_arn, source_account=account()))
    [found] = LambdaFunction().owned(api, "staging")

    LambdaFunction().delete(api, found)

    with pytest.raises(client("lambda").exceptions.ResourceNotFoundException):
        client("lambda").get_function(FunctionName=made.name)
    with pytest.raises(client("lambda").exceptions.ResourceNotFoundException):
        client("lambda").get_policy(FunctionName=made.name)
    assert LambdaFunction().gone(api, found)
    assert writes(aws, lambda: LambdaFunction().delete(api, found)) == 0
    assert client("lambda").get_function(FunctionName=prod.name)["Configuration"][
        "FunctionArn"] == prod.id
    assert InvokePermission().owned(api, "staging") == []


# -- event source mappings --------------------------------------------------------------------

def mapped_function(api: Api, name: str, env: str, role: str) -> tuple:
    """A function fed by a queue of its own: (function, mapping)."""
    function = make_function(api, name, env, role)
    url = client("sqs").create_queue(QueueName=f"{name}-queue",
                                     Attributes={"VisibilityTimeout": "180"})["QueueUrl"]
    source = client("sqs").get_queue_attributes(
        QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    mapping = EventSourceMapping().create(api, MappingSpec(
        f"{name}/{name}-queue", function.tags, "lambdas", function=name, source_arn=source,
        visibility_timeout_s=180, function_timeout_s=3))
    return function, mapping


def test_of_function_lists_every_mapping_of_that_function_only(aws, api):
    role = execution_role()
    _, staging = mapped_function(api, "matbakh-staging-process-user-signup", "staging", role)
    _, prod = mapped_function(api, "matbakh-prod-process-user-signup", "prod", role)

    found = EventSourceMapping().of_function(api, "matbakh-staging-process-user-signup")

    assert [m.id for m in found] == [staging.id]
    assert found[0].mapping["EventSourceArn"].endswith(":matbakh-staging-process-user-signup-queue")
    assert EventSourceMapping().of_function(api, "no-such-function") == []
    assert EventSourceMapping().owned(api, "staging") == []   # mappings carry no tags


def test_a_mapping_is_deleted_gone_and_a_second_delete_writes_nothing(aws, api):
    role = execution_role()
    _, staging = mapped_function(api, "matbakh-staging-process-user-signup", "staging", role)
    _, prod = mapped_function(api, "matbakh-prod-process-user-signup", "prod", role)
    [found] = EventSourceMapping().of_function(api, "matbakh-staging-process-user-signup")
    assert not EventSourceMapping().gone(api, found)

    EventSourceMapping().delete(api, found)

    with pytest.raises(client("lambda").exceptions.ResourceNotFoundException):
        client("lambda").get_event_source_mapping(UUID=staging.id)
    assert EventSourceMapping().gone(api, found)
    assert writes(aws, lambda: EventSourceMapping().delete(api, found)) == 0
    assert client("lambda").get_event_source_mapping(UUID=prod.id)["UUID"] == prod.id


def test_a_mapping_already_deleting_is_done_and_not_yet_gone(aws, api):
    """moto deletes a mapping at once and never describes one as Deleting: AWS's answer
    during a deletion is made here by setting State on GetEventSourceMapping's answer."""
    role = execution_role()
    _, staging = mapped_function(api, "matbakh-staging-process-user-signup", "staging", role)
    [found] = EventSourceMapping().of_function(api, "matbakh-staging-process-user-signup")

    def deleting(parsed, **_):
        parsed["State"] = "Deleting"

    api.client("lambda").meta.events.register("after-call.lambda.GetEventSourceMapping",
                                              deleting)

    assert writes(aws, lambda: EventSourceMapping().delete(api, found)) == 0
    assert not EventSourceMapping().gone(api, found)
    assert client("lambda").get_event_source_mapping(UUID=staging.id)["UUID"] == staging.id


# -- layer versions -----------------------------------------------------------------------

@pytest.fixture
def layer_cache(tmp_path, monkeypatch):
    """A layer cache holding the dependencies' entry, so that `create` builds from it
    without pip."""
    monkeypatch.setenv("RUNBOOK_CACHE_DIR", str(tmp_path))
    entry = package.default_cache_dir() / f"{package.layer_content_hash('python3.11')}.zip"
    entry.parent.mkdir(parents=True)
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as archive:
        archive.writestr("python/dependency.py", "")
    entry.write_bytes(data.getvalue())


def publish(api: Api, name: str, content_hash: str):
    return LayerVersion().create(api, LayerSpec(name, {}, "lambdas.layer", runtime="python3.11",
                                                content_hash=content_hash))


def test_versions_are_runbooks_versions_of_the_layer_only(aws, api, layer_cache):
    first = publish(api, "matbakh-staging-deps", "a" * 64)
    client("lambda").publish_layer_version(LayerName="matbakh-staging-deps",
                                           Description="someone else's build",
                                           Content={"ZipFile": _zip()})
    second = publish(api, "matbakh-staging-deps", "b" * 64)
    publish(api, "matbakh-prod-deps", "a" * 64)

    found = LayerVersion().versions(api, "matbakh-staging-deps")

    assert [v.id for v in found] == [first.id, second.id]
    assert [(v.name, v.version, v.content_hash) for v in found] == [
        ("matbakh-staging-deps", 1, "a" * 64), ("matbakh-staging-deps", 3, "b" * 64)]
    assert LayerVersion().versions(api, "no-such-layer") == []


def test_a_layer_version_is_deleted_and_a_second_delete_writes_nothing(aws, api, layer_cache):
    publish(api, "matbakh-staging-deps", "a" * 64)
    publish(api, "matbakh-staging-deps", "b" * 64)
    prod = publish(api, "matbakh-prod-deps", "a" * 64)
    found = LayerVersion().versions(api, "matbakh-staging-deps")

    for version in found:
        LayerVersion().delete(api, version)

    assert client("lambda").list_layer_versions(
        LayerName="matbakh-staging-deps")["LayerVersions"] == []
    assert all(LayerVersion().gone(api, v) for v in found)
    assert writes(aws, lambda: LayerVersion().delete(api, found[0])) == 0
    assert [v["LayerVersionArn"] for v in client("lambda").list_layer_versions(
        LayerName="matbakh-prod-deps")["LayerVersions"]] == [prod.id]


# -- roles ----------------------------------------------------------------------------------

def make_role(api: Api, name: str, env: str, *, created: bool = True):
    return Role().create(api, RoleSpec(name, tags(name, env, "deploy-process-user-signup",
                                                  created=created), "lambdas",
                                       service="lambda.amazonaws.com", policy=POLICY))


def test_roles_owned_are_the_environments_only_with_their_tags_and_policy(aws, api):
    made = make_role(api, "matbakh-staging-signup-role", "staging")
    adopted = make_role(api, "matbakh-staging-legacy-role", "staging", created=False)
    make_role(api, "matbakh-prod-signup-role", "prod")
    client("iam").create_role(RoleName="untagged", AssumeRolePolicyDocument=json.dumps(TRUST))

    owned = Role().owned(api, "staging")

    assert ids(owned) == sorted([made.id, adopted.id])
    found = {r.id: r for r in owned}[made.id]
    assert found.tags == made.tags and found.arn == made.arn and found.policy == POLICY


def test_a_role_is_deleted_with_its_policies_and_profiles_and_a_second_delete_writes_nothing(
        aws, api):
    iam = client("iam")
    made = make_role(api, "matbakh-staging-signup-role", "staging")
    prod = make_role(api, "matbakh-prod-signup-role", "prod")
    iam.put_role_policy(RoleName=made.id, PolicyName="added-by-hand",
                        PolicyDocument=json.dumps(POLICY))
    managed = iam.create_policy(PolicyName="shared", PolicyDocument=json.dumps(POLICY))
    arn = managed["Policy"]["Arn"]
    iam.attach_role_policy(RoleName=made.id, PolicyArn=arn)
    iam.attach_role_policy(RoleName=prod.id, PolicyArn=arn)
    iam.create_instance_profile(InstanceProfileName="profile")
    iam.add_role_to_instance_profile(InstanceProfileName="profile", RoleName=made.id)
    [found] = Role().owned(api, "staging")

    Role().delete(api, found)

    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.get_role(RoleName=made.id)
    assert iam.get_instance_profile(InstanceProfileName="profile")["InstanceProfile"][
        "Roles"] == []
    assert iam.get_policy(PolicyArn=arn)["Policy"]["AttachmentCount"] == 1   # the policy stays
    assert Role().gone(api, found)
    assert writes(aws, lambda: Role().delete(api, found)) == 0
    assert iam.get_role(RoleName=prod.id)["Role"]["Arn"] == prod.arn
    assert [p["PolicyArn"] for p in iam.list_attached_role_policies(
        RoleName=prod.id)["AttachedPolicies"]] == [arn]


# -- log groups -----------------------------------------------------------------------------

def make_group(api: Api, name: str, env: str):
    arn = f"arn:aws:logs:{REGION}:{account()}:log-group:{name}"
    return LogGroup().create(api, LogGroupSpec(name, tags(name, env, "cognito"), "lambdas",
                                               arn=arn, retention_days=14))


def test_a_log_group_is_owned_deleted_once_and_prod_is_kept(aws, api):
    made = make_group(api, "/aws/lambda/matbakh-staging-pre-signup", "staging")
    prod = make_group(api, "/aws/lambda/matbakh-prod-pre-signup", "prod")
    client("logs").create_log_group(logGroupName="/aws/lambda/untagged")

    owned = LogGroup().owned(api, "staging")

    assert [(g.id, g.tags, g.retention_days) for g in owned] == [(made.id, made.tags, 14)]
    [found] = owned
    assert found.name == "/aws/lambda/matbakh-staging-pre-signup"

    LogGroup().delete(api, found)

    names = [g["logGroupName"] for g in client("logs").describe_log_groups()["logGroups"]]
    assert names == ["/aws/lambda/matbakh-prod-pre-signup", "/aws/lambda/untagged"]
    assert LogGroup().gone(api, found)
    assert writes(aws, lambda: LogGroup().delete(api, found)) == 0
    assert prod.id.endswith(":/aws/lambda/matbakh-prod-pre-signup")


# -- alarms -----------------------------------------------------------------------------------

def make_alarm(api: Api, name: str, env: str):
    return Alarm().create(api, AlarmSpec(name, tags(name, env, "event-bus"), "events.alarms",
                                         namespace="AWS/SQS",
                                         metric="ApproximateNumberOfMessagesVisible",
                                         dimensions={"QueueName": "q"}))


def test_an_alarm_is_owned_deleted_once_and_prod_is_kept(aws, api):
    made = make_alarm(api, "matbakh-staging-dlq-depth", "staging")
    make_alarm(api, "matbakh-prod-dlq-depth", "prod")

    owned = Alarm().owned(api, "staging")

    assert [(a.id, a.tags, a.name) for a in owned] == [(made.id, made.tags,
                                                         "matbakh-staging-dlq-depth")]
    Alarm().delete(api, owned[0])

    remaining = client("cloudwatch").describe_alarms()["MetricAlarms"]
    assert [a["AlarmName"] for a in remaining] == ["matbakh-prod-dlq-depth"]
    assert Alarm().gone(api, owned[0])
    assert writes(aws, lambda: Alarm().delete(api, owned[0])) == 0


# -- queues -----------------------------------------------------------------------------------

def make_queue(api: Api, name: str, env: str, *, created: bool = True):
    return Queue().create(api, QueueSpec(name, tags(name, env, "event-bus", created=created),
                                         "events.queue", arn=queue_arn(REGION, account(), name),
                                         visibility_timeout=180))


def test_queues_owned_are_the_environments_with_their_attributes(aws, api):
    made = make_queue(api, "matbakh-staging-user-signup", "staging")
    adopted = make_queue(api, "matbakh-staging-legacy", "staging", created=False)
    make_queue(api, "matbakh-prod-user-signup", "prod")
    client("sqs").create_queue(QueueName="untagged")

    owned = Queue().owned(api, "staging")

    assert ids(owned) == sorted([made.id, adopted.id])
    found = {q.id: q for q in owned}[made.id]
    assert (found.tags, found.arn, found.visibility_timeout, found.name) == (
        made.tags, made.arn, 180, "matbakh-staging-user-signup")


def test_a_queue_is_deleted_gone_and_a_second_delete_writes_nothing(aws, api):
    make_queue(api, "matbakh-staging-user-signup", "staging")
    prod = make_queue(api, "matbakh-prod-user-signup", "prod")
    [found] = Queue().owned(api, "staging")
    assert not Queue().gone(api, found)

    Queue().delete(api, found)

    with pytest.raises(client("sqs").exceptions.QueueDoesNotExist):
        client("sqs").get_queue_url(QueueName="matbakh-staging-user-signup")
    assert Queue().gone(api, found)
    assert writes(aws, lambda: Queue().delete(api, found)) == 0
    assert client("sqs").get_queue_url(QueueName="matbakh-prod-user-signup")["QueueUrl"] == prod.id


# -- buses, rules, targets ----------------------------------------------------------------

def make_event_path(api: Api, env: str) -> dict:
    """A bus with a rule and its queue target (step event-bus), and a schedule on the
    default bus (deploy-process-user-signup): {"bus", "rule", "schedule"}."""
    acct = account()
    bus, rule, schedule = f"matbakh-{env}-events", f"matbakh-{env}-user-registered", \
        f"matbakh-{env}-registration-relay"
    made = {"bus": EventBus().create(api, EventBusSpec(bus, tags(bus, env, "event-bus"),
                                                       "events.bus")),
            "rule": Rule().create(api, RuleSpec(rule, tags(rule, env, "event-bus"),
                                                "events.rule",
                                                arn=rule_arn(REGION, acct, bus, rule), bus=bus,
                                                pattern={"source": ["matbakh.auth"]})),
            "schedule": Rule().create(api, RuleSpec(
                schedule, tags(schedule, env, "deploy-process-user-signup"), "relay",
                arn=rule_arn(REGION, acct, DEFAULT_BUS, schedule), bus=DEFAULT_BUS,
                schedule="rate(5 minutes)"))}
    for key, bus_name, name in (("rule", bus, rule), ("schedule", DEFAULT_BUS, schedule)):
        Target().create(api, TargetSpec(f"{name}/t", made[key].tags, "events.rule", rule=name,
                                        rule_arn=made[key].id, bus=bus_name, target_id="t",
                                        arn=queue_arn(REGION, acct, f"{env}-queue")))
    return made


def test_rules_owned_are_the_environments_on_every_bus_the_default_one_included(aws, api):
    staging = make_event_path(api, "staging")
    make_event_path(api, "prod")

    owned = Rule().owned(api, "staging")

    assert ids(owned) == sorted([staging["rule"].id, staging["schedule"].id])
    by_id = {r.id: r for r in owned}
    assert (by_id[staging["rule"].id].bus, by_id[staging["rule"].id].name) == (
        "matbakh-staging-events", "matbakh-staging-user-registered")
    assert (by_id[staging["schedule"].id].bus, by_id[staging["schedule"].id].schedule) == (
        DEFAULT_BUS, "rate(5 minutes)")
    assert by_id[staging["rule"].id].tags == staging["rule"].tags
    assert Target().owned(api, "staging") == []


def test_rules_are_deleted_with_their_targets_then_the_bus_and_prod_is_kept(aws, api):
    events = client("events")
    make_event_path(api, "staging")
    prod = make_event_path(api, "prod")
    rules = Rule().owned(api, "staging")

    for rule in rules:
        Rule().delete(api, rule)

    for rule in rules:
        with pytest.raises(events.exceptions.ResourceNotFoundException):
            events.describe_rule(Name=rule.name, EventBusName=rule.bus)
        assert Rule().gone(api, rule)
        assert writes(aws, lambda: Rule().delete(api, rule)) == 0
    [bus] = EventBus().owned(api, "staging")
    assert (bus.name, bus.tags[ENV_TAG]) == ("matbakh-staging-events", "staging")

    EventBus().delete(api, bus)

    with pytest.raises(events.exceptions.ResourceNotFoundException):
        events.describe_event_bus(Name="matbakh-staging-events")
    assert EventBus().gone(api, bus)
    assert writes(aws, lambda: EventBus().delete(api, bus)) == 0
    assert EventBus().owned(api, "staging") == []
    # prod's path is whole: its bus, both rules, each with its target.
    assert ids(EventBus().owned(api, "prod")) == [prod["bus"].id]
    assert ids(Rule().owned(api, "prod")) == sorted([prod["rule"].id, prod["schedule"].id])
    for rule in Rule().owned(api, "prod"):
        assert [t["Id"] for t in events.list_targets_by_rule(
            Rule=rule.name, EventBusName=rule.bus)["Targets"]] == ["t"]


# -- user pools ---------------------------------------------------------------------------

PASSWORD = {"min_length": 14, "require_uppercase": True, "require_lowercase": True,
            "require_numbers": True, "require_symbols": False,
            "temporary_password_validity_days": 3}
PRE_SIGNUP = f"arn:aws:lambda:{REGION}:123456789012:function:matbakh-staging-pre-signup"
POST_CONFIRMATION = f"arn:aws:lambda:{REGION}:123456789012:function:matbakh-staging-confirm"
FOREIGN = f"arn:aws:lambda:{REGION}:123456789012:function:someone-elses-custom-message"


def make_pool(api: Api, name: str, env: str, *, created: bool = True,
              triggers: dict | None = None) -> str:
    """A pool as step cognito makes it, with deletion protection, a custom attribute
    and triggers; its id."""
    spec = UserPoolSpec(name, tags(name, env, "cognito", created=created), "cognito.user_pool",
                        password_policy=PASSWORD, deletion_protection=True,
                        custom_attributes={"legacy_id": attribute_schema("legacy_id", "String",
                                                                          False, 64)},
                        triggers=triggers if triggers is not None
                        else {"PreSignUp": PRE_SIGNUP})
    found = UserPool().create(api, spec)
    UserPool().add_custom_attributes(api, spec, found, ["legacy_id"])
    AppClient().create(api, AppClientSpec(f"{name}-web", {}, "cognito.client", pool_id=found.id))
    return found.id


def described(pool_id: str) -> dict:
    return client("cognito-idp").describe_user_pool(UserPoolId=pool_id)["UserPool"]


def kept_settings(pool: dict) -> dict:
    """What deleting protection, or detaching triggers, must leave as it was."""
    return {"password": pool["Policies"]["PasswordPolicy"],
            "custom": sorted(a["Name"] for a in pool["SchemaAttributes"]
                             if a["Name"].startswith("custom:")),
            "auto_verified": pool.get("AutoVerifiedAttributes"),
            "recovery": pool.get("AccountRecoverySetting"),
            "tags": pool.get("UserPoolTags")}


def test_pools_owned_are_the_environments_over_every_page(aws, api, monkeypatch):
    made = make_pool(api, "matbakh-staging-users", "staging")
    adopted = make_pool(api, "matbakh-staging-legacy-users", "staging", created=False)
    make_pool(api, "matbakh-prod-users", "prod")
    client("cognito-idp").create_user_pool(PoolName="untagged")
    monkeypatch.setattr(user_pool, "PAGE_SIZE", 1)

    owned = UserPool().owned(api, "staging")

    assert ids(owned) == sorted([made, adopted])
    found = {p.id: p for p in owned}[made]
    assert found.tags == tags("matbakh-staging-users", "staging", "cognito")
    assert found.settings["deletion_protection"] == "ACTIVE"
    assert AppClient().owned(api, "staging") == []


def test_deleting_a_pool_turns_protection_off_first_keeping_the_rest_then_the_domain(aws, api):
    pool_id = make_pool(api, "matbakh-staging-users", "staging")
    prod = make_pool(api, "matbakh-prod-users", "prod")
    client("cognito-idp").create_user_pool_domain(Domain="matbakh-staging", UserPoolId=pool_id)
    before = described(pool_id)
    [found] = UserPool().owned(api, "staging")
    calls = []
    # Each request as runbook made it, in order (botocore's hook before the request is built).
    api.client("cognito-idp").meta.events.register(
        "before-parameter-build.cognito-idp",
        lambda model, params, **_: calls.append((model.name, dict(params))))

    UserPool().delete(api, found)

    writes_made = [(name, params) for name, params in calls
                   if not name.startswith(("Describe", "List"))]
    assert [name for name, _ in writes_made] == ["UpdateUserPool", "DeleteUserPoolDomain",
                                                 "DeleteUserPool"]
    update = writes_made[0][1]
    assert update["DeletionProtection"] == "INACTIVE"
    # The update sent the whole configuration back: what it would otherwise reset is there.
    assert update["Policies"]["PasswordPolicy"] == before["Policies"]["PasswordPolicy"]
    assert update["LambdaConfig"] == {"PreSignUp": PRE_SIGNUP}
    assert update["UserPoolTags"] == before["UserPoolTags"]
    assert update["AutoVerifiedAttributes"] == ["email"]
    assert writes_made[1][1] == {"Domain": "matbakh-staging", "UserPoolId": pool_id}
    with pytest.raises(client("cognito-idp").exceptions.ResourceNotFoundException):
        described(pool_id)
    assert UserPool().gone(api, found)
    assert writes(aws, lambda: UserPool().delete(api, found)) == 0
    assert described(prod)["DeletionProtection"] == "ACTIVE"


def test_a_pool_delete_interrupted_after_protection_is_off_kept_the_config_and_finishes(api):
    pool_id = make_pool(api, "matbakh-staging-users", "staging")
    client("cognito-idp").create_user_pool_domain(Domain="matbakh-staging", UserPoolId=pool_id)
    before = described(pool_id)
    [found] = UserPool().owned(api, "staging")

    def crash(service, operation, write):
        if operation == "DeleteUserPool":
            raise RuntimeError("interrupted")

    interrupted = Api(ClientFactory(REGION, interceptors=[crash]), sleep=lambda s: None)
    with pytest.raises(RuntimeError):
        UserPool().delete(interrupted, found)

    after = described(pool_id)
    assert after["DeletionProtection"] == "INACTIVE"
    assert "Domain" not in after
    assert kept_settings(after) == kept_settings(before)
    assert after["LambdaConfig"] == {"PreSignUp": PRE_SIGNUP}

    UserPool().delete(api, found)

    with pytest.raises(client("cognito-idp").exceptions.ResourceNotFoundException):
        described(pool_id)


def test_detach_triggers_removes_only_those_of_deleted_functions_in_one_whole_update(aws, api):
    pool_id = make_pool(api, "matbakh-staging-users", "staging", created=False,
                        triggers={"PreSignUp": PRE_SIGNUP, "PostConfirmation": POST_CONFIRMATION,
                                  "CustomMessage": FOREIGN})
    before = described(pool_id)
    [found] = UserPool().owned(api, "staging")

    count, removed = counted(aws, lambda: UserPool().detach_triggers(
        api, found, {PRE_SIGNUP, POST_CONFIRMATION, "arn:aws:lambda:x:1:function:unused"}))

    assert count == 1
    assert removed == {"PreSignUp": PRE_SIGNUP, "PostConfirmation": POST_CONFIRMATION}
    after = described(pool_id)
    assert after["LambdaConfig"] == {"CustomMessage": FOREIGN}
    assert kept_settings(after) == kept_settings(before)
    assert after["DeletionProtection"] == "ACTIVE"
    # Nothing left to remove: no call beyond the read, by id as by Found.
    assert writes(aws, lambda: UserPool().detach_triggers(api, pool_id, {PRE_SIGNUP})) == 0
    assert UserPool().detach_triggers(api, "eu-central-1_gone", {PRE_SIGNUP}) == {}


def test_without_triggers_matches_plain_qualified_and_structured_triggers():
    config = {"PreSignUp": PRE_SIGNUP,
              "PostConfirmation": f"{POST_CONFIRMATION}:live",
              "PreTokenGeneration": FOREIGN,
              "PreTokenGenerationConfig": {"LambdaVersion": "V2_0", "LambdaArn": FOREIGN},
              "CustomEmailSender": {"LambdaVersion": "V1_0", "LambdaArn": PRE_SIGNUP},
              "KMSKeyID": f"arn:aws:kms:{REGION}:123456789012:key/k"}

    kept, removed = without_triggers(config, {PRE_SIGNUP, POST_CONFIRMATION})

    assert removed == {"PreSignUp": PRE_SIGNUP, "PostConfirmation": f"{POST_CONFIRMATION}:live",
                       "CustomEmailSender": PRE_SIGNUP}
    assert kept == {"PreTokenGeneration": FOREIGN,
                    "PreTokenGenerationConfig": {"LambdaVersion": "V2_0", "LambdaArn": FOREIGN},
                    "KMSKeyID": config["KMSKeyID"]}
    assert without_triggers(None, {PRE_SIGNUP}) == ({}, {})
