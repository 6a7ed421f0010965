"""Step `deploy-user-migration` against in-process moto, after a1, a2, a3's deploy steps
(fix-tables on a real PostgreSQL) and hash-table: the function outside the VPC, its
least-privilege role, the invoke permission, and the UserMigration and
PostAuthentication triggers merged into the pool's whole configuration, read back from
the account; a second apply makes no mutating call."""

from __future__ import annotations

import json

import boto3
import pytest

from runbook import config as config_mod
from runbook.aws import userpool
from runbook.functions import package
from runbook.resources.user_pool import EXPLICIT_AUTH_FLOWS
from runbook.steps.deploy_user_migration import PASSWORD_FLOW
from tests.conftest import PROD_CONFIG, REGION
from tests.functional.conftest import run_steps as run

BEFORE = ["network", "database", "store-secrets", "cognito", "vpc-integrate", "fix-tables",
          "db-proxy", "deploy-post-confirmation", "hash-table"]
STEP = "deploy-user-migration"
FUNCTION = "matbakh-cognito-user-migration"
POST_CONFIRMATION = "matbakh-cognito-post-confirmation"
TABLE = "matbakh-prod-legacy-user-hashes"
ACCOUNT = "123456789012"
# What an UpdateUserPool changes besides what it sets.
CHANGED_BY_ANY_UPDATE = ("LambdaConfig", "LastModifiedDate")


def ok(results):
    failed = {n: r.error for n, r in results.items() if r.status != "ok"}
    assert not failed, failed
    return results


def before(config, dsn):
    """The steps STEP needs, run: their results."""
    return ok(run(config, BEFORE, dsn)[0])


def deployed(config, dsn):
    return ok(run(config, BEFORE + [STEP], dsn)[0])


def client(service):
    return boto3.client(service, region_name=REGION)


def pool_of(results) -> dict:
    return client("cognito-idp").describe_user_pool(
        UserPoolId=results["cognito"].outputs["user_pool_id"])["UserPool"]


def function_arn(name: str) -> str:
    return client("lambda").get_function(FunctionName=name)["Configuration"]["FunctionArn"]


def set_lambda_config(pool: dict, **triggers) -> None:
    """A change made by hand, the whole configuration sent as the console does."""
    client("cognito-idp").update_user_pool(**userpool.update_request(
        pool, LambdaConfig={**pool["LambdaConfig"], **triggers}))


def test_first_apply_sets_both_triggers_in_one_update_and_keeps_every_other_setting(
        account, pg_dsn):
    config = config_mod.load(PROD_CONFIG)
    earlier = before(config, pg_dsn)
    pool_before = pool_of(earlier)
    assert set(pool_before["LambdaConfig"]) == {"PreSignUp", "PostConfirmation"}

    results, aws = run(config, [STEP], pg_dsn)

    step = ok(results)[STEP]
    # The layer deploy-post-confirmation published is used, not published again.
    assert [c.op for c in step.changes] == ["create_role", "create_log_group",
                                            "create_function", "set_permission",
                                            "attach_trigger"]
    calls = [e["call"] for e in aws.journal.entries]
    assert calls.count("cognito-idp:UpdateUserPool") == 1
    assert not any(call.startswith("lambda:PublishLayerVersion") for call in calls)
    pool_after = pool_of(earlier)
    assert pool_after["LambdaConfig"] == {
        **pool_before["LambdaConfig"],
        "UserMigration": function_arn(FUNCTION),
        "PostAuthentication": function_arn(POST_CONFIRMATION)}
    assert pool_before["LambdaConfig"]["PostConfirmation"] == function_arn(POST_CONFIRMATION)
    assert pool_before["LambdaConfig"]["PreSignUp"] == (
        earlier["cognito"].outputs["pre_signup_function_arn"])
    unchanged = {key: value for key, value in pool_before.items()
                 if key not in CHANGED_BY_ANY_UPDATE}
    assert {key: pool_after.get(key) for key in unchanged} == unchanged
    # Among them what UpdateUserPool resets when a request omits it.
    for key in ("Policies", "SchemaAttributes", "DeletionProtection", "AutoVerifiedAttributes",
                "UserPoolTags", "MfaConfiguration", "AccountRecoverySetting"):
        assert key in unchanged, key
    assert pool_after["DeletionProtection"] == "ACTIVE"
    assert "custom:role" in {a["Name"] for a in pool_after["SchemaAttributes"]}


def test_second_apply_makes_no_mutating_call(account, pg_dsn):
    config = config_mod.load(PROD_CONFIG)
    assert deployed(config, pg_dsn)[STEP].changed
    again, aws = run(config, [STEP], pg_dsn)
    assert again[STEP].status == "ok", again[STEP].error
    assert again[STEP].changes == []
    assert again[STEP].api_calls["write"] == 0 and again[STEP].api_calls["read"] > 0
    assert aws.journal.entries == []


def test_function_is_outside_the_vpc_with_the_table_and_attributes_and_the_layer(
        account, pg_dsn):
    config = config_mod.load(PROD_CONFIG)
    results = deployed(config, pg_dsn)
    fn = client("lambda").get_function(FunctionName=FUNCTION)
    conf = fn["Configuration"]
    assert not (conf.get("VpcConfig") or {}).get("SubnetIds")
    assert conf["Environment"]["Variables"] == {"HASH_TABLE": TABLE, "CUSTOM_ATTRIBUTES": "role"}
    assert (conf["MemorySize"], conf["Timeout"]) == (1024, 5)
    assert conf["CodeSha256"] == package.build_function("user_migration").sha256
    layer = results["deploy-post-confirmation"].outputs["layer_version_arn"]
    assert [entry["Arn"] for entry in conf["Layers"]] == [layer]
    assert fn["Tags"]["runbook:function"] == "user_migration"
    assert fn["Tags"]["runbook:step"] == STEP
    outputs = results[STEP].outputs
    assert outputs == {
        "function_name": FUNCTION, "function_arn": conf["FunctionArn"],
        "role_arn": conf["Role"], "layer_version_arn": layer,
        "code_sha256": conf["CodeSha256"],
        "post_authentication_arn": function_arn(POST_CONFIRMATION)}
    group = client("logs").describe_log_groups(
        logGroupNamePrefix=f"/aws/lambda/{FUNCTION}")["logGroups"]
    assert [(g["logGroupName"], g.get("retentionInDays")) for g in group] == [
        (f"/aws/lambda/{FUNCTION}", 30)]


def test_role_reads_one_item_of_the_one_table_and_decrypts_only_through_dynamodb(
        account, pg_dsn):
    results = deployed(config_mod.load(PROD_CONFIG), pg_dsn)
    iam = client("iam")
    role = f"{FUNCTION}-role"
    assert iam.list_role_policies(RoleName=role)["PolicyNames"] == ["runbook"]
    assert iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"] == []
    trust = iam.get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"]
    assert [s["Principal"] for s in trust["Statement"]] == [{"Service": "lambda.amazonaws.com"}]
    policy = iam.get_role_policy(RoleName=role, PolicyName="runbook")["PolicyDocument"]
    table = results["hash-table"].outputs
    assert policy["Statement"] == [
        {"Sid": "Logs", "Effect": "Allow",
         "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/{FUNCTION}:*"},
        {"Sid": "ReadHashes", "Effect": "Allow", "Action": "dynamodb:GetItem",
         "Resource": table["table_arn"]},
        {"Sid": "DecryptTableKey", "Effect": "Allow", "Action": "kms:Decrypt",
         "Resource": table["key_arn"],
         "Condition": {"StringEquals": {"kms:ViaService": f"dynamodb.{REGION}.amazonaws.com"}}}]
    assert table["table_arn"].endswith(f":table/{TABLE}")


def test_cognito_may_invoke_it_from_this_pool_in_this_account_only(account, pg_dsn):
    results = deployed(config_mod.load(PROD_CONFIG), pg_dsn)
    policy = json.loads(client("lambda").get_policy(FunctionName=FUNCTION)["Policy"])
    [statement] = policy["Statement"]
    assert statement["Sid"] == "runbook-cognito-user-migration"
    assert statement["Principal"] == {"Service": "cognito-idp.amazonaws.com"}
    assert statement["Action"] == "lambda:InvokeFunction"
    assert statement["Condition"] == {
        "ArnLike": {"AWS:SourceArn": results["cognito"].outputs["user_pool_arn"]},
        "StringEquals": {"AWS:SourceAccount": ACCOUNT}}


def test_a_client_without_password_sign_in_is_refused_naming_the_client_and_the_fix(
        account, pg_dsn):
    assert PASSWORD_FLOW in EXPLICIT_AUTH_FLOWS   # what step cognito sets
    config = config_mod.load(PROD_CONFIG)
    earlier = before(config, pg_dsn)
    cognito = earlier["cognito"].outputs
    idp = client("cognito-idp")
    described = idp.describe_user_pool_client(UserPoolId=cognito["user_pool_id"],
                                              ClientId=cognito["client_id"])["UserPoolClient"]
    idp.update_user_pool_client(**userpool.client_update_request(
        described, ExplicitAuthFlows=["ALLOW_REFRESH_TOKEN_AUTH", "ALLOW_USER_SRP_AUTH"]))

    results, aws = run(config, [STEP], pg_dsn)

    step = results[STEP]
    assert (step.status, step.error_kind) == ("failed", "input")
    assert f"cognito-idp:app-client matbakh-prod-web ({cognito['client_id']})" in step.error
    assert "lack ALLOW_USER_PASSWORD_AUTH" in step.error
    assert "runbook run --step cognito" in step.error
    assert aws.total("write") == 0
    with pytest.raises(client("lambda").exceptions.ResourceNotFoundException):
        client("lambda").get_function(FunctionName=FUNCTION)
    assert "UserMigration" not in pool_of(earlier)["LambdaConfig"]


def test_a_trigger_pointed_elsewhere_by_hand_is_put_back_and_the_others_kept(account, pg_dsn):
    config = config_mod.load(PROD_CONFIG)
    results = deployed(config, pg_dsn)
    pool = pool_of(results)
    triggers = dict(pool["LambdaConfig"])
    other = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:someone-elses-migration"
    set_lambda_config(pool, UserMigration=other)

    again, aws = run(config, [STEP], pg_dsn)

    step = ok(again)[STEP]
    assert [(c.action, c.op, c.diff) for c in step.changes] == [
        ("update", "attach_trigger", {
            "trigger UserMigration": {"from": other, "to": triggers["UserMigration"]},
            "other settings": "kept (the whole configuration is sent)"})]
    assert [e["call"] for e in aws.journal.entries] == ["cognito-idp:UpdateUserPool"]
    assert pool_of(results)["LambdaConfig"] == triggers
    rest, aws = run(config, [STEP], pg_dsn)
    assert rest[STEP].changes == [] and aws.journal.entries == []


def test_both_triggers_removed_by_hand_come_back_in_one_update(account, pg_dsn):
    config = config_mod.load(PROD_CONFIG)
    results = deployed(config, pg_dsn)
    pool = pool_of(results)
    triggers = dict(pool["LambdaConfig"])
    client("cognito-idp").update_user_pool(**userpool.update_request(
        pool, LambdaConfig={name: arn for name, arn in triggers.items()
                            if name not in ("UserMigration", "PostAuthentication")}))

    again, aws = run(config, [STEP], pg_dsn)

    [change] = ok(again)[STEP].changes
    assert change.diff == {
        "trigger UserMigration": {"from": None, "to": triggers["UserMigration"]},
        "trigger PostAuthentication": {"from": None, "to": triggers["PostAuthentication"]},
        "other settings": "kept (the whole configuration is sent)"}
    assert [e["call"] for e in aws.journal.entries] == ["cognito-idp:UpdateUserPool"]
    assert pool_of(results)["LambdaConfig"] == triggers


def test_plan_before_anything_exists_makes_no_write(account, pg_dsn):
    config = config_mod.load(PROD_CONFIG)
    results, aws = run(config, BEFORE + [STEP], pg_dsn, plan_only=True)
    assert results[STEP].status == "ok", results[STEP].error
    assert aws.total("write") == 0
    assert [c.op for c in results[STEP].changes] == [
        "publish_layer", "create_role", "create_log_group", "create_function",
        "set_permission", "attach_trigger"]
