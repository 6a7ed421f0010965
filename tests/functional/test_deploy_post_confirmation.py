"""Step `deploy-post-confirmation` against in-process moto, after a1, a2, vpc-integrate
and fix-tables (on a real PostgreSQL): the role and its least-privilege policy, the
function in the private subnets, the layer, the invoke permission and the trigger."""

from __future__ import annotations

import json

import boto3
import pytest

from runbook import config as config_mod
from runbook.functions import package, registry
from tests.conftest import PROD_CONFIG, REGION
from tests.functional.conftest import run_steps as run

BEFORE = ["network", "database", "store-secrets", "cognito", "vpc-integrate", "fix-tables",
          "db-proxy"]
STEP = "deploy-post-confirmation"
FUNCTION = "matbakh-cognito-post-confirmation"


def deployed(config, dsn):
    """The steps before STEP (db-proxy only where the file has it), then STEP."""
    before = [s for s in BEFORE if s != "db-proxy" or registry.through_proxy(config)]
    results, _ = run(config, before + [STEP], dsn)
    failed = {n: r.error for n, r in results.items() if r.status != "ok"}
    assert not failed, failed
    return results


def client(service):
    return boto3.client(service, region_name=REGION)


def role_policy():
    iam = client("iam")
    return iam.get_role_policy(RoleName=f"{FUNCTION}-role", PolicyName="runbook")["PolicyDocument"]


def actions(policy) -> dict:
    out = {}
    for statement in policy["Statement"]:
        for action in statement["Action"] if isinstance(statement["Action"], list) \
                else [statement["Action"]]:
            out[action] = statement["Resource"]
    return out


def with_roles(write_config, roles):
    """prod.yaml with `roles`, and without step db-proxy: logins straight to the cluster."""
    def mutate(data):
        data["database"]["roles"] = roles
        data["phases"]["a3"].remove("db-proxy")
    return config_mod.load(write_config(mutate))


def test_second_apply_makes_no_mutating_call(account, pg_dsn):
    config = config_mod.load(PROD_CONFIG)
    first = deployed(config, pg_dsn)
    assert first[STEP].changed
    again, aws = run(config, [STEP], pg_dsn)
    assert again[STEP].status == "ok", again[STEP].error
    assert again[STEP].changes == []
    assert again[STEP].api_calls["write"] == 0 and again[STEP].api_calls["read"] > 0
    assert aws.journal.entries == []


def test_function_runs_in_the_private_subnets_with_its_environment(account, pg_dsn):
    config = config_mod.load(PROD_CONFIG)
    results = deployed(config, pg_dsn)
    fn = client("lambda").get_function(FunctionName=FUNCTION)
    conf = fn["Configuration"]
    vpc = results["vpc-integrate"].outputs
    assert sorted(conf["VpcConfig"]["SubnetIds"]) == sorted(vpc["subnet_ids"])
    assert conf["VpcConfig"]["SecurityGroupIds"] == [vpc["lambda_security_group_id"]]
    assert (conf["MemorySize"], conf["Timeout"], conf["Runtime"]) == (512, 60, "python3.11")
    assert conf["Handler"] == "handler.handler"
    # config/prod.yaml has phase a4: the trigger publishes to the environment's bus. It
    # has db-proxy: the trigger logs in through the proxy as its role, by IAM.
    assert conf["Environment"]["Variables"] == {
        "DB_SCHEMA": "public", "DB_USERS_SCHEMA": "app", "DB_AUDIT_SCHEMA": "audit",
        "DB_AUTH": "iam",
        "DB_HOST": results["db-proxy"].outputs["endpoint"], "DB_PORT": "5432",
        "DB_NAME": "matbakh_main", "DB_USER": "matbakh_post_confirmation",
        "DB_SSLROOTCERT": "/opt/rds-ca/global-bundle.pem",
        "EVENT_BUS_NAME": "matbakh-prod-events"}
    assert conf["CodeSha256"] == package.build_function("post_confirmation").sha256
    layers = [layer["Arn"] for layer in conf["Layers"]]
    assert layers == [results[STEP].outputs["layer_version_arn"]]
    assert fn["Tags"]["runbook:function"] == "post_confirmation"
    group = client("logs").describe_log_groups(
        logGroupNamePrefix=f"/aws/lambda/{FUNCTION}")["logGroups"]
    assert [(g["logGroupName"], g.get("retentionInDays")) for g in group] == [
        (f"/aws/lambda/{FUNCTION}", 30)]


def test_role_has_only_what_the_function_needs(account, pg_dsn):
    config = config_mod.load(PROD_CONFIG)
    results = deployed(config, pg_dsn)
    trust = client("iam").get_role(RoleName=f"{FUNCTION}-role")["Role"]["AssumeRolePolicyDocument"]
    assert [s["Principal"] for s in trust["Statement"]] == [{"Service": "lambda.amazonaws.com"}]
    granted = actions(role_policy())
    # Through the proxy, as its own user, by its prx- id; the master secret unreadable.
    assert not any(a.startswith("secretsmanager:") for a in granted)
    prx = results["db-proxy"].outputs["proxy_arn"].rsplit(":", 1)[-1]
    assert granted["rds-db:connect"] == (
        f"arn:aws:rds-db:{REGION}:123456789012:dbuser:{prx}/matbakh_post_confirmation")
    assert granted["logs:PutLogEvents"].endswith(f":log-group:/aws/lambda/{FUNCTION}:*")
    assert "ec2:CreateNetworkInterface" in granted
    assert not any(a.endswith("*") and ":" in a and a.split(":")[1] == "*" for a in granted)
    assert "logs:CreateLogGroup" not in granted  # runbook creates it, with a retention
    assert granted["events:PutEvents"] == (
        f"arn:aws:events:{REGION}:123456789012:event-bus/matbakh-prod-events")


def test_without_phase_a4_the_trigger_neither_publishes_nor_may(account, pg_dsn, write_config):
    def a3_only(data):
        del data["phases"]["a4"]

    deployed(config_mod.load(write_config(a3_only)), pg_dsn)
    conf = client("lambda").get_function_configuration(FunctionName=FUNCTION)
    assert "EVENT_BUS_NAME" not in conf["Environment"]["Variables"]
    assert not any(action.startswith("events:") for action in actions(role_policy()))


def test_iam_auth_role_connects_as_the_trigger_user_and_cannot_read_the_secret(
        account, pg_dsn, write_config):
    config = with_roles(write_config, {"matbakh_post_confirmation": {"trigger": "post-confirmation"}})
    results = deployed(config, pg_dsn)
    env = client("lambda").get_function_configuration(FunctionName=FUNCTION)["Environment"]
    database = results["database"].outputs
    assert env["Variables"] == {"DB_SCHEMA": "public", "DB_USERS_SCHEMA": "app",
                                "DB_AUDIT_SCHEMA": "audit", "DB_AUTH": "iam",
                                "DB_HOST": database["endpoint"], "DB_PORT": "5432",
                                "DB_NAME": "matbakh_main", "DB_USER": "matbakh_post_confirmation",
                                "DB_SSLROOTCERT": "/opt/rds-ca/global-bundle.pem",
                                "EVENT_BUS_NAME": "matbakh-prod-events"}
    granted = actions(role_policy())
    assert "secretsmanager:GetSecretValue" not in granted
    assert granted["rds-db:connect"] == (
        f"arn:aws:rds-db:{REGION}:123456789012:dbuser:{database['cluster_resource_id']}"
        "/matbakh_post_confirmation")


def test_cognito_may_invoke_it_for_this_pool_only(account, pg_dsn):
    config = config_mod.load(PROD_CONFIG)
    results = deployed(config, pg_dsn)
    policy = json.loads(client("lambda").get_policy(FunctionName=FUNCTION)["Policy"])
    [statement] = policy["Statement"]
    assert statement["Principal"] == {"Service": "cognito-idp.amazonaws.com"}
    assert statement["Condition"] == {
        "ArnLike": {"AWS:SourceArn": results["cognito"].outputs["user_pool_arn"]},
        "StringEquals": {"AWS:SourceAccount": "123456789012"}}


def test_trigger_is_attached_and_the_pool_keeps_its_settings(account, pg_dsn):
    config = config_mod.load(PROD_CONFIG)
    results, _ = run(config, BEFORE, pg_dsn)
    idp = client("cognito-idp")
    pool_id = results["cognito"].outputs["user_pool_id"]
    before = idp.describe_user_pool(UserPoolId=pool_id)["UserPool"]
    deployed(config, pg_dsn)
    after = idp.describe_user_pool(UserPoolId=pool_id)["UserPool"]
    arn = client("lambda").get_function(FunctionName=FUNCTION)["Configuration"]["FunctionArn"]
    assert after["LambdaConfig"]["PostConfirmation"] == arn
    assert after["LambdaConfig"].get("PreSignUp") == before["LambdaConfig"].get("PreSignUp")
    for key in ("Policies", "AutoVerifiedAttributes", "SchemaAttributes", "DeletionProtection",
                "AccountRecoverySetting"):
        assert after.get(key) == before.get(key), key


def test_a_trigger_someone_else_set_is_kept(account, pg_dsn):
    from runbook.aws import userpool

    config = config_mod.load(PROD_CONFIG)
    results, _ = run(config, BEFORE, pg_dsn)
    idp = client("cognito-idp")
    pool_id = results["cognito"].outputs["user_pool_id"]
    pool = idp.describe_user_pool(UserPoolId=pool_id)["UserPool"]
    other = "arn:aws:lambda:eu-central-1:123456789012:function:someone-elses-message"
    idp.update_user_pool(**userpool.update_request(pool, LambdaConfig={
        **(pool.get("LambdaConfig") or {}), "CustomMessage": other}))
    deployed(config, pg_dsn)
    triggers = idp.describe_user_pool(UserPoolId=pool_id)["UserPool"]["LambdaConfig"]
    assert triggers["CustomMessage"] == other
    assert triggers["PostConfirmation"].endswith(f":function:{FUNCTION}")


def test_its_trigger_replaced_and_its_environment_changed_elsewhere_are_put_back(
        account, pg_dsn):
    from runbook.aws import userpool

    config = config_mod.load(PROD_CONFIG)
    results = deployed(config, pg_dsn)
    idp, lam = client("cognito-idp"), client("lambda")
    pool_id = results["cognito"].outputs["user_pool_id"]
    pool = idp.describe_user_pool(UserPoolId=pool_id)["UserPool"]
    arn = pool["LambdaConfig"]["PostConfirmation"]
    other = "arn:aws:lambda:eu-central-1:123456789012:function:someone-elses"
    idp.update_user_pool(**userpool.update_request(pool, LambdaConfig={
        **pool["LambdaConfig"], "PostConfirmation": other}))
    variables = lam.get_function_configuration(FunctionName=FUNCTION)["Environment"]["Variables"]
    lam.update_function_configuration(FunctionName=FUNCTION, Environment={
        "Variables": {**variables, "DB_SCHEMA": "elsewhere"}})

    again, aws = run(config, [STEP], pg_dsn)

    step = again[STEP]
    assert step.status == "ok", step.error
    assert [(c.action, c.op, c.diff) for c in step.changes] == [
        ("update", "update_configuration", {"environment": {
            "from": {"DB_SCHEMA": "elsewhere"}, "to": {"DB_SCHEMA": variables["DB_SCHEMA"]}}}),
        ("update", "attach_trigger", {"trigger PostConfirmation": {"from": other, "to": arn},
                                      "other settings": "kept (the whole configuration is sent)"})]
    assert idp.describe_user_pool(UserPoolId=pool_id)["UserPool"]["LambdaConfig"][
        "PostConfirmation"] == arn
    assert lam.get_function_configuration(FunctionName=FUNCTION)["Environment"][
        "Variables"] == variables
    rest, aws = run(config, [STEP], pg_dsn)
    assert rest[STEP].changes == [] and aws.journal.entries == []


def test_a_changed_setting_updates_only_the_configuration(account, pg_dsn, write_config):
    deployed(config_mod.load(PROD_CONFIG), pg_dsn)

    def mutate(data):
        data["lambdas"]["post_confirmation"]["memory_mb"] = 1024
    changed = config_mod.load(write_config(mutate))
    results, aws = run(changed, [STEP], pg_dsn)
    assert results[STEP].status == "ok", results[STEP].error
    assert [(c.op, c.diff) for c in results[STEP].changes] == [
        ("update_configuration", {"memory_mb": {"from": 512, "to": 1024}})]
    calls = [e["call"] for e in aws.journal.entries]
    assert calls == ["lambda:UpdateFunctionConfiguration"]
    assert client("lambda").get_function_configuration(FunctionName=FUNCTION)["MemorySize"] == 1024


def test_plan_before_anything_exists_makes_no_write(account, pg_dsn):
    config = config_mod.load(PROD_CONFIG)
    results, aws = run(config, BEFORE + [STEP], pg_dsn, plan_only=True)
    assert results[STEP].status == "ok", results[STEP].error
    assert aws.total("write") == 0
    ops = [c.op for c in results[STEP].changes]
    assert ops == ["publish_layer", "create_role", "create_log_group", "create_function",
                   "set_permission", "attach_trigger"]


def test_role_not_yet_assumable_is_recognised_from_lambdas_real_answer(account):
    from runbook.aws import retry

    with pytest.raises(Exception) as caught:
        client("lambda").create_function(
            FunctionName="f", Runtime="python3.11", Handler="handler.handler",
            Role="arn:aws:iam::123456789012:role/not-yet-there",
            Code={"ZipFile": package.build_function("post_confirmation").data})
    assert retry.is_role_not_assumable(caught.value)
    assert not retry.is_role_not_assumable(ValueError("cannot be assumed"))
