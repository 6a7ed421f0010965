"""Step `cognito` against in-process moto: the pool and client it creates, what it adopts,
what it refuses, that a second apply makes no mutating call, and that attaching a trigger
keeps every other setting of the pool and the client."""

from __future__ import annotations

import copy
import json

import boto3
import pytest

from runbook import config as config_mod
from runbook.functions import package
from runbook.aws import userpool
from runbook.aws.clients import ClientFactory
from runbook.engine import UNKNOWN
from runbook.steps import new_runner
from runbook.output.progress import Progress
from tests.conftest import REGION

POOL = "matbakh-prod-users"
CLIENT = "matbakh-prod-web"
FLOWS = ["ALLOW_REFRESH_TOKEN_AUTH", "ALLOW_USER_PASSWORD_AUTH", "ALLOW_USER_SRP_AUTH"]
PRE_SIGNUP = "matbakh-cognito-pre-signup"
PRE_SIGNUP_ARN = f"arn:aws:lambda:{REGION}:123456789012:function:{PRE_SIGNUP}"
FOREIGN_ARN = f"arn:aws:lambda:{REGION}:123456789012:function:someone-elses-post-auth"


def run(config, *, plan_only=False, interceptors=()):
    """One `cognito` run with a fresh factory, as a separate invocation would have.
    `interceptors` see each AWS call before it is sent and may refuse it
    (runbook.aws.ClientFactory)."""
    aws = ClientFactory(REGION, interceptors=list(interceptors))
    runner = new_runner(config, aws, Progress(quiet=True), plan_only=plan_only, sleep=lambda s: None)
    [result] = runner.run(["cognito"])
    return result, aws


def idp():
    return boto3.client("cognito-idp", region_name=REGION)


def lam():
    return boto3.client("lambda", region_name=REGION)


def pools_named(name=POOL):
    return [p["Id"] for p in idp().list_user_pools(MaxResults=60)["UserPools"] if p["Name"] == name]


def describe(pool_id):
    return idp().describe_user_pool(UserPoolId=pool_id)["UserPool"]


def describe_client(pool_id, client_id):
    return idp().describe_user_pool_client(UserPoolId=pool_id, ClientId=client_id)["UserPoolClient"]


def custom_attributes(pool):
    return {a["Name"]: a for a in pool["SchemaAttributes"] if a["Name"].startswith("custom:")}


def legacy_pool(**settings):
    """A pool made outside runbook (by the old shell scripts), e-mail as username."""
    kwargs = {"UsernameAttributes": ["email"], "UsernameConfiguration": {"CaseSensitive": False},
              **settings}
    return idp().create_user_pool(PoolName=POOL, **{k: v for k, v in kwargs.items()
                                                     if v is not None})["UserPool"]["Id"]


def pool_with_runbooks_settings(**settings):
    """A pool with every setting config/prod.yaml asks for, so that adopting it changes
    nothing, and no trigger of runbook's."""
    return legacy_pool(
        Policies={"PasswordPolicy": {
            "MinimumLength": 12, "RequireUppercase": True, "RequireLowercase": True,
            "RequireNumbers": True, "RequireSymbols": True, "TemporaryPasswordValidityDays": 7}},
        DeletionProtection="ACTIVE", AutoVerifiedAttributes=["email"],
        AccountRecoverySetting={"RecoveryMechanisms": [{"Priority": 1, "Name": "verified_email"}]},
        UserPoolTags={"project": "matbakh", "Name": POOL, "runbook:env": "prod",
                      "runbook:step": "cognito"},
        Schema=[{"Name": "role", "AttributeDataType": "String", "Mutable": True,
                 "StringAttributeConstraints": {"MaxLength": "32"}}],
        **settings)


# -- create and re-run ----------------------------------------------------------------

def test_creates_an_email_username_pool_with_the_configured_settings_and_a_public_client(
        account, config):
    result, _ = run(config)

    assert result.status == "ok", result.error
    [pool_id] = pools_named()
    pool = describe(pool_id)
    assert pool["UsernameAttributes"] == ["email"]
    assert pool["UsernameConfiguration"] == {"CaseSensitive": False}
    assert pool["AutoVerifiedAttributes"] == ["email"]
    assert pool["Policies"]["PasswordPolicy"] == {
        "MinimumLength": 12, "RequireUppercase": True, "RequireLowercase": True,
        "RequireNumbers": True, "RequireSymbols": True, "TemporaryPasswordValidityDays": 7}
    assert pool["DeletionProtection"] == "ACTIVE"
    assert pool["AccountRecoverySetting"] == {
        "RecoveryMechanisms": [{"Priority": 1, "Name": "verified_email"}]}
    role = custom_attributes(pool)["custom:role"]
    assert (role["AttributeDataType"], role["Mutable"],
            role["StringAttributeConstraints"]["MaxLength"]) == ("String", True, "32")
    tags = pool["UserPoolTags"]
    assert (tags["runbook:env"], tags["runbook:step"], tags["Name"], tags["project"]) == (
        "prod", "cognito", POOL, "matbakh")

    [listed] = idp().list_user_pool_clients(UserPoolId=pool_id, MaxResults=60)["UserPoolClients"]
    client = describe_client(pool_id, listed["ClientId"])
    assert client["ClientName"] == CLIENT
    assert "ClientSecret" not in client
    assert sorted(client["ExplicitAuthFlows"]) == FLOWS
    assert client["PreventUserExistenceErrors"] == "ENABLED"

    function_arn = lam().get_function(FunctionName=PRE_SIGNUP)["Configuration"]["FunctionArn"]
    assert result.outputs == {"user_pool_id": pool_id, "user_pool_arn": pool["Arn"],
                              "client_id": client["ClientId"], "user_pool_name": POOL,
                              "pre_signup_function_arn": function_arn}
    # Created with its trigger in CreateUserPool: no UpdateUserPool, which moto would
    # answer by dropping UsernameAttributes (asserted above).
    assert pool["LambdaConfig"] == {"PreSignUp": function_arn}


def test_pre_signup_runs_outside_the_vpc_with_the_domain_rules_and_only_its_log_rights(
        account, write_config):
    def domains(data):
        data["cognito"]["allowed_domains"] = ["example.com", "matbakh.app"]
        data["cognito"]["auto_confirm_domains"] = ["matbakh.app"]
    result, aws = run(config_mod.load(write_config(domains)))
    assert result.status == "ok", result.error

    found = lam().get_function(FunctionName=PRE_SIGNUP)
    conf = found["Configuration"]
    assert conf["Environment"]["Variables"] == {"ALLOWED_EMAIL_DOMAINS": "example.com,matbakh.app",
                                                "AUTO_CONFIRM_DOMAINS": "matbakh.app"}
    assert not (conf.get("VpcConfig") or {}).get("SubnetIds")
    assert conf.get("Layers", []) == []
    assert (conf["Runtime"], conf["MemorySize"], conf["Timeout"]) == ("python3.11", 256, 30)
    assert conf["CodeSha256"] == package.build_function("pre_signup").sha256
    assert found["Tags"]["runbook:function"] == "pre_signup"

    iam = boto3.client("iam", region_name=REGION)
    policy = iam.get_role_policy(RoleName=f"{PRE_SIGNUP}-role",
                                 PolicyName="runbook")["PolicyDocument"]
    [statement] = policy["Statement"]
    assert sorted(statement["Action"]) == ["logs:CreateLogStream", "logs:PutLogEvents"]
    assert statement["Resource"] == (f"arn:aws:logs:{REGION}:123456789012:log-group:"
                                     f"/aws/lambda/{PRE_SIGNUP}:*")

    permission = json.loads(lam().get_policy(FunctionName=PRE_SIGNUP)["Policy"])
    [grant] = permission["Statement"]
    assert grant["Principal"] == {"Service": "cognito-idp.amazonaws.com"}
    assert grant["Condition"] == {
        "StringEquals": {"AWS:SourceAccount": "123456789012"},
        "ArnLike": {"AWS:SourceArn": result.outputs["user_pool_arn"]}}

    # The pool is created with the trigger, after the function and before the permission
    # that names the pool's ARN.
    calls = [e["call"] for e in aws.journal.entries]
    assert calls.index("lambda:CreateFunction") < calls.index("cognito-idp:CreateUserPool") \
        < calls.index("lambda:AddPermission")


def test_second_apply_makes_no_mutating_call(account, config):
    first, _ = run(config)
    assert first.status == "ok" and first.changed, first.error

    again, aws = run(config)

    assert again.status == "ok", again.error
    assert again.changes == []
    assert again.api_calls["write"] == 0
    assert again.api_calls["read"] > 0
    assert aws.journal.entries == []
    assert again.outputs == first.outputs


def test_an_untagged_log_group_is_adopted_and_tagged_not_left_untagged(account, config):
    # As Lambda leaves it on a first invocation, or the old scripts did: no tags.
    logs = boto3.client("logs", region_name=REGION)
    logs.create_log_group(logGroupName=f"/aws/lambda/{PRE_SIGNUP}")

    result, _ = run(config)

    assert result.status == "ok", result.error
    group = f"logs:log-group /aws/lambda/{PRE_SIGNUP}"
    tagging = [c for c in result.changes if c.resource == group]
    assert [c.op for c in tagging] == ["set_retention", "tag_log_group"]
    tags = logs.list_tags_log_group(logGroupName=f"/aws/lambda/{PRE_SIGNUP}")["tags"]
    assert (tags["runbook:env"], tags["runbook:step"], tags["Name"]) == ("prod", "cognito",
                                                                       PRE_SIGNUP)
    assert len(logs.describe_log_groups(logGroupNamePrefix="/aws/lambda/")["logGroups"]) == 1
    assert run(config)[0].api_calls["write"] == 0


def test_plan_on_an_empty_account_lists_pool_attributes_and_client_and_writes_nothing(
        account, config):
    result, aws = run(config, plan_only=True)

    assert result.status == "ok", result.error
    assert [(c.action, c.op) for c in result.changes] == [
        ("create", "create_role"), ("create", "create_log_group"),
        ("create", "create_function"), ("create", "create_pool"),
        ("update", "add_custom_attributes"), ("create", "set_permission"),
        ("create", "create_client")]
    [pool] = [c for c in result.changes if c.op == "create_pool"]
    assert pool.diff["trigger PreSignUp"].endswith(f":function:{PRE_SIGNUP}")
    assert aws.total("write") == 0 and aws.journal.entries == []
    assert pools_named() == []
    # The report's form of a value known only after apply.
    assert result.outputs["user_pool_id"] == str(UNKNOWN) == "(known after apply)"
    assert result.outputs["client_id"] == "(known after apply)"


# -- adoption -------------------------------------------------------------------------

def test_a_pool_and_client_made_outside_runbook_are_adopted_by_name_not_duplicated(
        account, config):
    pool_id = legacy_pool(Policies={"PasswordPolicy": {"MinimumLength": 8}},
                          UserPoolTags={"owner": "shell-scripts"})
    client_id = idp().create_user_pool_client(
        UserPoolId=pool_id, ClientName=CLIENT, ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH"],
        RefreshTokenValidity=10, ReadAttributes=["email"])["UserPoolClient"]["ClientId"]

    result, _ = run(config)

    assert result.status == "ok", result.error
    assert pools_named() == [pool_id]
    assert result.outputs["user_pool_id"] == pool_id and result.outputs["client_id"] == client_id
    assert not any(c.action == "create" for c in result.changes
                   if c.resource.startswith("cognito-idp:"))
    [update] = [c for c in result.changes if c.op == "update_pool"]
    assert update.diff["password_policy.min_length"] == {"from": 8, "to": 12}
    assert update.diff["deletion_protection"] == {"from": "INACTIVE", "to": "ACTIVE"}
    assert update.diff["auto_verified_attributes"] == {"from": [], "to": ["email"]}
    assert update.diff["tags"]["to"]["runbook:env"] == "prod"
    [client_change] = [c for c in result.changes if c.op == "update_client"]
    assert client_change.diff["explicit_auth_flows"] == {
        "from": ["ALLOW_USER_PASSWORD_AUTH"], "to": FLOWS}

    pool = describe(pool_id)
    assert pool["Policies"]["PasswordPolicy"]["MinimumLength"] == 12
    assert pool["DeletionProtection"] == "ACTIVE"
    assert pool["UserPoolTags"]["owner"] == "shell-scripts"       # someone else's tag kept
    assert pool["UserPoolTags"]["runbook:step"] == "cognito"
    assert "custom:role" in custom_attributes(pool)
    client = describe_client(pool_id, client_id)
    assert sorted(client["ExplicitAuthFlows"]) == FLOWS
    # The client update sent the client's whole configuration: its other settings stay.
    assert client["RefreshTokenValidity"] == 10 and client["ReadAttributes"] == ["email"]

    again, _ = run(config)
    assert again.changes == [] and again.api_calls["write"] == 0


def test_pools_and_clients_are_found_beyond_the_first_page(account, config, monkeypatch):
    from runbook.resources import user_pool

    idp().create_user_pool(PoolName="someone-else")
    pool_id = legacy_pool()
    idp().create_user_pool(PoolName="someone-else-too")
    for name in ("other-a", CLIENT, "other-b"):
        idp().create_user_pool_client(UserPoolId=pool_id, ClientName=name)
    monkeypatch.setattr(user_pool, "PAGE_SIZE", 1)

    result, _ = run(config)

    assert result.status == "ok", result.error
    assert result.outputs["user_pool_id"] == pool_id
    assert not any(c.action == "create" for c in result.changes
                   if c.resource.startswith("cognito-idp:"))
    assert len(idp().list_user_pools(MaxResults=60)["UserPools"]) == 3


def test_a_pool_given_by_id_is_used_even_when_others_share_its_name(account, write_config):
    first = legacy_pool()
    second = legacy_pool()

    refused, aws = run(config_mod.load(write_config()))
    assert refused.error_kind == "input"                       # exit 2
    assert first in refused.error and second in refused.error and "cognito.pool_id" in refused.error
    assert aws.total("write") == 0

    chosen = config_mod.load(write_config(lambda d: d["cognito"].update(pool_id=second)))
    result, _ = run(chosen)
    assert result.status == "ok", result.error
    assert result.outputs["user_pool_id"] == second
    assert "runbook:env" not in (describe(first).get("UserPoolTags") or {})


def test_a_pool_id_that_does_not_exist_is_refused(account, write_config):
    config = config_mod.load(write_config(
        lambda d: d["cognito"].update(pool_id=f"{REGION}_DoesNotExist")))
    result, aws = run(config)
    assert result.error_kind == "input"
    assert "cognito.pool_id" in result.error and "no such user pool" in result.error
    assert aws.total("write") == 0


@pytest.mark.parametrize("settings, says", [
    ({"UsernameAttributes": None}, "shows no UsernameAttributes"),
    ({"UsernameAttributes": ["phone_number"]}, "sign in with phone_number"),
    ({"UsernameConfiguration": {"CaseSensitive": True}}, "case-sensitive"),
])
def test_an_adopted_pool_whose_users_do_not_sign_in_by_email_is_refused(
        account, config, settings, says):
    legacy_pool(**settings)
    result, aws = run(config)
    assert result.error_kind == "input", result.error
    assert says in result.error and "cannot be changed" in result.error
    assert aws.total("write") == 0


def test_an_adopted_pool_without_case_sensitivity_setting_is_adopted_and_the_plan_says_so(
        account, config):
    legacy_pool(UsernameConfiguration=None)
    result, _ = run(config)
    assert result.status == "ok", result.error
    [update] = [c for c in result.changes if c.op == "update_pool"]
    assert "case sensitivity never set" in update.diff["usernames"]


def test_a_pool_of_another_environment_is_not_adopted(account, config):
    legacy_pool(UserPoolTags={"runbook:env": "staging", "runbook:step": "cognito"})
    result, aws = run(config)
    assert result.error_kind == "input" and "'staging'" in result.error
    assert aws.total("write") == 0


# -- custom attributes ----------------------------------------------------------------

def test_a_missing_custom_attribute_is_added_and_nothing_else_changes(
        account, config, write_config):
    run(config)
    [pool_id] = pools_named()
    before = describe(pool_id)

    def add_tier(data):
        data["cognito"]["custom_attributes"]["tier"] = {"type": "Number", "mutable": False}

    result, _ = run(config_mod.load(write_config(add_tier)))

    assert result.status == "ok", result.error
    assert [(c.op, list(c.diff)) for c in result.changes] == [
        ("add_custom_attributes", ["custom:tier"])]
    after = describe(pool_id)
    tier = custom_attributes(after)["custom:tier"]
    assert (tier["AttributeDataType"], tier["Mutable"]) == ("Number", False)
    assert custom_attributes(after)["custom:role"] == custom_attributes(before)["custom:role"]
    assert {k: v for k, v in after.items() if k != "SchemaAttributes"} == \
        {k: v for k, v in before.items() if k != "SchemaAttributes"}


def test_a_custom_attribute_that_differs_from_the_file_is_refused_by_name(account, config):
    legacy_pool(Schema=[{"Name": "role", "AttributeDataType": "String", "Mutable": True,
                         "StringAttributeConstraints": {"MaxLength": "64"}}])
    result, aws = run(config)
    assert result.error_kind == "input"
    assert "cognito.custom_attributes.role" in result.error
    assert "max length 64" in result.error and "max length 32" in result.error
    assert aws.total("write") == 0


# -- the app client -------------------------------------------------------------------

def test_an_app_client_with_a_secret_is_refused(account, config):
    pool_id = legacy_pool()
    client_id = idp().create_user_pool_client(UserPoolId=pool_id, ClientName=CLIENT,
                                              GenerateSecret=True)["UserPoolClient"]["ClientId"]
    result, aws = run(config)
    assert result.error_kind == "input"                         # exit 2
    assert "client secret" in result.error and "cognito.client" in result.error
    assert (f"delete-user-pool-client --user-pool-id {pool_id} --client-id {client_id}"
            in result.error)
    assert aws.total("write") == 0


# -- triggers and the "keep every setting" update -------------------------------------

def test_a_naive_update_user_pool_resets_what_it_omits(account, config):
    """Why runbook.userpool exists: moto, like AWS, resets every omitted setting."""
    run(config)
    [pool_id] = pools_named()

    idp().update_user_pool(UserPoolId=pool_id, LambdaConfig={"PreSignUp": PRE_SIGNUP_ARN})

    pool = describe(pool_id)
    assert pool["Policies"]["PasswordPolicy"]["MinimumLength"] == 8    # was 12
    assert "DeletionProtection" not in pool                            # was ACTIVE
    assert "AutoVerifiedAttributes" not in pool                        # was [email]
    assert "UserPoolTags" not in pool                                  # were runbook's tags


def test_setting_a_trigger_keeps_the_pool_and_client_settings_and_other_triggers(
        account, config):
    # A pool and a client that already have runbook's settings (so that adopting them
    # changes nothing), and a trigger someone else attached; only PreSignUp is missing.
    pool_id = pool_with_runbooks_settings(LambdaConfig={"PostAuthentication": FOREIGN_ARN})
    client_id = idp().create_user_pool_client(
        UserPoolId=pool_id, ClientName=CLIENT, ExplicitAuthFlows=FLOWS,
        PreventUserExistenceErrors="ENABLED", RefreshTokenValidity=10,
        ReadAttributes=["email"])["UserPoolClient"]["ClientId"]
    before = describe(pool_id)
    client_before = describe_client(pool_id, client_id)

    result, aws = run(config)

    assert result.status == "ok", result.error
    # The function and its permission are made first; the pool gets one change.
    assert [c.op for c in result.changes] == [
        "create_role", "create_log_group", "create_function", "set_permission",
        "set_triggers"]
    [trigger] = [c for c in result.changes if c.op == "set_triggers"]
    assert trigger.diff["trigger PreSignUp"] == {"from": None, "to": PRE_SIGNUP_ARN}
    calls = [e["call"] for e in aws.journal.entries]
    assert [c for c in calls if c.startswith("cognito-idp:")] == ["cognito-idp:UpdateUserPool"]
    assert calls.index("lambda:AddPermission") < calls.index("cognito-idp:UpdateUserPool")
    assert result.outputs["client_id"] == client_id
    after = describe(pool_id)
    assert after["LambdaConfig"] == {"PostAuthentication": FOREIGN_ARN,
                                     "PreSignUp": PRE_SIGNUP_ARN}
    for kept in ("Policies", "AutoVerifiedAttributes", "SchemaAttributes",
                 "DeletionProtection", "AccountRecoverySetting", "UserPoolTags",
                 "VerificationMessageTemplate", "EmailConfiguration", "MfaConfiguration"):
        assert after[kept] == before[kept], kept
    # Everything else is unchanged too, but for three known differences:
    expected = copy.deepcopy(before)
    expected["LambdaConfig"] = after["LambdaConfig"]
    # - moto rebuilds a pool's settings from each UpdateUserPool request, which cannot
    #   carry UsernameAttributes or UsernameConfiguration, so moto drops them. AWS never
    #   changes them (they are fixed at creation); see test_moto_drops_... below.
    del expected["UsernameAttributes"], expected["UsernameConfiguration"]
    # - the deprecated AdminCreateUserConfig.UnusedAccountValidityDays is not sent back
    #   (AWS refuses it next to PasswordPolicy.TemporaryPasswordValidityDays, which holds
    #   the same setting and is kept).
    del expected["AdminCreateUserConfig"]["UnusedAccountValidityDays"]
    assert after == expected
    assert describe_client(pool_id, client_id) == client_before

    again, _ = run(config)
    # The pool carries runbook's tags, so the emulator's missing UsernameAttributes are
    # not held against it: the dry run's verify pass stays green.
    assert again.status == "ok", again.error
    assert again.changes == [] and again.api_calls["write"] == 0


def test_moto_drops_username_attributes_on_every_update_user_pool(account, config):
    """A moto gap (AWS keeps them): if this starts failing, moto was fixed, and the
    step's module docstring about when UsernameAttributes are checked can be revisited."""
    run(config)
    [pool_id] = pools_named()
    described = describe(pool_id)
    assert described["UsernameAttributes"] == ["email"]

    idp().update_user_pool(**userpool.update_request(described))

    assert "UsernameAttributes" not in describe(pool_id)


def test_a_trigger_whose_function_is_not_created_yet_is_planned_with_the_arn_it_will_have(
        account, config):
    legacy_pool()
    result, aws = run(config, plan_only=True)
    assert result.status == "ok", result.error
    [trigger] = [c for c in result.changes if c.op == "set_triggers"]
    assert trigger.diff["trigger PreSignUp"] == {"from": None, "to": PRE_SIGNUP_ARN}
    assert aws.total("write") == 0
    assert lam().list_functions()["Functions"] == []


def test_a_pool_gets_no_trigger_when_its_function_could_not_be_made(account, config):
    """Cognito calls a trigger from the moment it is attached: a pool must never point
    at a function that does not exist. Lambda refuses CreateFunction here."""
    from botocore.exceptions import ClientError

    pool_id = pool_with_runbooks_settings()
    before = describe(pool_id)

    def refuse_create_function(service, operation, write):
        if (service, operation) == ("lambda", "CreateFunction"):
            raise ClientError({"Error": {"Code": "ServiceException", "Message": "refused"},
                               "ResponseMetadata": {"HTTPStatusCode": 500}}, operation)

    result, aws = run(config, interceptors=[refuse_create_function])

    assert result.error_kind == "failure", result.error
    assert f"lambda:function {PRE_SIGNUP}: ServiceException: refused" in result.error
    assert not [e for e in aws.journal.entries if e["call"].startswith("cognito-idp:")]
    assert describe(pool_id) == before
    assert lam().list_functions()["Functions"] == []

    again, _ = run(config)
    assert again.status == "ok", again.error
    assert describe(pool_id)["LambdaConfig"] == {"PreSignUp": PRE_SIGNUP_ARN}
