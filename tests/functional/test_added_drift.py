"""What someone adds beside runbook's own settings is planned away, against in-process
moto: grants on an execution role, a function's environment, a replaced or removed
trigger. Step `cognito` (the Pre-SignUp function and the pool) stands for every step
that deploys a function: they share runbook.functions. Security-group rules have their
tests in test_vpc_integrate_step.py."""

from __future__ import annotations

import json

import boto3
import pytest

from runbook import config as config_mod
from runbook.aws import userpool
from runbook.aws.clients import ClientFactory
from runbook.steps import new_runner
from runbook.functions.deploy import WITHHELD
from runbook.output.progress import Progress
from runbook.steps.cognito import CognitoStep
from tests.conftest import REGION

FUNCTION = "matbakh-cognito-pre-signup"
ROLE = f"{FUNCTION}-role"
MANAGED = "arn:aws:iam::123456789012:policy/everything"
EXTRA = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
# A security team's guardrail, put on every role: it only takes away.
GUARDRAIL = {"Version": "2012-10-17", "Statement": [
    {"Sid": "NoLeavingTheOrg", "Effect": "Deny", "Action": "s3:PutObject", "Resource": "*",
     "Condition": {"StringNotEquals": {"aws:ResourceOrgID": "o-example"}}},
    {"Sid": "NoIamChanges", "Effect": "Deny", "NotAction": ["logs:*", "ec2:*"],
     "Resource": "*"}]}


def run(config, *, plan_only=False):
    aws = ClientFactory(REGION)
    runner = new_runner(config, aws, Progress(quiet=True), plan_only=plan_only, sleep=lambda s: None)
    [result] = runner.run(["cognito"])
    assert result.status == "ok", result.error
    return result, aws


@pytest.fixture
def config(write_config):
    """config/prod.yaml with a domain rule, so that Pre-SignUp has an environment."""
    def with_domains(data):
        data["cognito"]["allowed_domains"] = ["example.com"]

    return config_mod.load(write_config(with_domains))


@pytest.fixture
def converged(account, config):
    first, _ = run(config)
    assert first.changed
    # A customer-managed policy that grants everything (in-process moto does not load
    # AWS's managed policies).
    iam().create_policy(PolicyName="everything", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    return first.outputs


def iam():
    return boto3.client("iam", region_name=REGION)


def lam():
    return boto3.client("lambda", region_name=REGION)


def idp():
    return boto3.client("cognito-idp", region_name=REGION)


def calls(aws):
    return sorted(e["call"] for e in aws.journal.entries)


def assert_converged(config):
    again, aws = run(config)
    assert again.changes == [] and aws.journal.entries == []


def test_an_inline_policy_and_a_managed_policy_added_to_the_role_are_removed(converged, config):
    iam().put_role_policy(RoleName=ROLE, PolicyName="debugging", PolicyDocument=json.dumps(EXTRA))
    iam().attach_role_policy(RoleName=ROLE, PolicyArn=MANAGED)

    plan, aws = run(config, plan_only=True)

    assert aws.total("write") == 0
    assert [(c.action, c.resource, c.diff) for c in plan.changes] == [
        ("delete", f"iam:role-policy {ROLE}/debugging", {"role": ROLE, "grants": ["s3:* on *"]}),
        ("delete", f"iam:attached-policy {ROLE} {MANAGED}",
         {"role": ROLE, "policy_arn": MANAGED, "grants": ["* on *"]})]

    result, aws = run(config)

    assert calls(aws) == ["iam:DeleteRolePolicy", "iam:DetachRolePolicy"]
    assert iam().list_role_policies(RoleName=ROLE)["PolicyNames"] == ["runbook"]
    assert iam().list_attached_role_policies(RoleName=ROLE)["AttachedPolicies"] == []
    assert_converged(config)


def test_a_policy_that_only_denies_stays_inline_or_managed_and_one_that_allows_goes(
        converged, config):
    guardrail = iam().create_policy(PolicyName="guardrail", PolicyDocument=json.dumps(
        GUARDRAIL))["Policy"]["Arn"]
    # A managed policy whose first version allowed; what counts is its default version.
    tightened = iam().create_policy(PolicyName="tightened", PolicyDocument=json.dumps(
        EXTRA))["Policy"]["Arn"]
    iam().create_policy_version(PolicyArn=tightened, PolicyDocument=json.dumps(GUARDRAIL),
                                SetAsDefault=True)
    mixed = {"Version": "2012-10-17", "Statement": [GUARDRAIL["Statement"][0],
                                                    EXTRA["Statement"][0]]}
    iam().put_role_policy(RoleName=ROLE, PolicyName="org-guardrail",
                          PolicyDocument=json.dumps(GUARDRAIL))
    iam().put_role_policy(RoleName=ROLE, PolicyName="debugging", PolicyDocument=json.dumps(mixed))
    for arn in (guardrail, tightened, MANAGED):
        iam().attach_role_policy(RoleName=ROLE, PolicyArn=arn)

    plan, aws = run(config, plan_only=True)

    assert aws.total("write") == 0
    assert [(c.action, c.resource, c.diff) for c in plan.changes] == [
        ("delete", f"iam:role-policy {ROLE}/debugging",
         {"role": ROLE, "grants": ["deny s3:PutObject on *", "s3:* on *"]}),
        ("delete", f"iam:attached-policy {ROLE} {MANAGED}",
         {"role": ROLE, "policy_arn": MANAGED, "grants": ["* on *"]})]

    result, aws = run(config)

    assert calls(aws) == ["iam:DeleteRolePolicy", "iam:DetachRolePolicy"]
    assert sorted(iam().list_role_policies(RoleName=ROLE)["PolicyNames"]) == [
        "org-guardrail", "runbook"]
    assert sorted(p["PolicyArn"] for p in iam().list_attached_role_policies(RoleName=ROLE)[
        "AttachedPolicies"]) == sorted([guardrail, tightened])
    assert_converged(config)


def test_a_statement_added_to_runbooks_inline_policy_is_taken_out(converged, config):
    document = iam().get_role_policy(RoleName=ROLE, PolicyName="runbook")["PolicyDocument"]
    wanted = json.loads(json.dumps(document))
    document["Statement"].append(EXTRA["Statement"][0])
    iam().put_role_policy(RoleName=ROLE, PolicyName="runbook", PolicyDocument=json.dumps(document))

    plan, _ = run(config, plan_only=True)

    [change] = plan.changes
    assert (change.action, change.resource, change.op) == (
        "update", f"iam:role {ROLE}", "put_role_policy")
    assert "s3:* on *" in change.diff["policy"]["from"]
    assert "s3:* on *" not in change.diff["policy"]["to"]
    run(config)
    assert iam().get_role_policy(RoleName=ROLE, PolicyName="runbook")["PolicyDocument"] == wanted
    assert_converged(config)


def test_a_grant_already_removed_when_its_removal_arrives_counts_as_done(converged, config):
    # A request sent again after its answer was lost, or a grant someone else removed
    # between plan and apply.
    iam().put_role_policy(RoleName=ROLE, PolicyName="debugging", PolicyDocument=json.dumps(EXTRA))
    iam().attach_role_policy(RoleName=ROLE, PolicyArn=MANAGED)
    runner = new_runner(config, ClientFactory(REGION), Progress(quiet=True), sleep=lambda s: None)
    step = CognitoStep(runner.context())
    state = step.read()
    removals = [c for c in step.plan(state) if c.action == "delete"]
    assert [step.apply(state, c) for c in removals] == [True, True]

    assert [step.apply(state, c) for c in removals] == [False, False]
    assert step.plan(state) == [] and step.plan(step.read()) == []


def test_an_environment_variable_added_or_changed_is_put_back_and_its_value_withheld(
        converged, config):
    variables = lam().get_function_configuration(FunctionName=FUNCTION)["Environment"][
        "Variables"]
    [(name, value)] = variables.items()  # ALLOWED_EMAIL_DOMAINS
    lam().update_function_configuration(FunctionName=FUNCTION, Environment={"Variables": {
        **variables, name: "elsewhere.example", "API_KEY": "sk-do-not-print-me"}})

    plan, _ = run(config, plan_only=True)

    [change] = plan.changes
    assert (change.action, change.resource) == ("update", f"lambda:function {FUNCTION}")
    assert change.diff == {"environment": {
        "from": {"API_KEY": WITHHELD, name: "elsewhere.example"},
        "to": {"API_KEY": "(removed)", name: value}}}
    assert "sk-do-not-print-me" not in change.describe()

    run(config)
    assert lam().get_function_configuration(FunctionName=FUNCTION)["Environment"][
        "Variables"] == variables
    assert_converged(config)


def pool_without(pool_id, trigger=None, **lambda_config):
    """What another client does: UpdateUserPool with the pool's whole configuration (as
    the console sends it), its triggers changed."""
    described = idp().describe_user_pool(UserPoolId=pool_id)["UserPool"]
    triggers = {k: v for k, v in (described.get("LambdaConfig") or {}).items() if k != trigger}
    idp().update_user_pool(**userpool.update_request(
        described, LambdaConfig={**triggers, **lambda_config}))


@pytest.mark.parametrize("replacement", [None, "arn:aws:lambda:eu-central-1:123456789012:"
                                               "function:someone-elses"],
                         ids=["removed", "replaced"])
def test_a_trigger_removed_or_replaced_is_attached_again(converged, config, replacement):
    pool_id, arn = converged["user_pool_id"], converged["pre_signup_function_arn"]
    pool_without(pool_id, "PreSignUp", **({"PreSignUp": replacement} if replacement else {}))

    plan, _ = run(config, plan_only=True)

    [change] = plan.changes
    assert change.action == "update" and change.resource.startswith(
        "cognito-idp:user-pool matbakh-prod-users")
    assert change.diff["trigger PreSignUp"] == {"from": replacement, "to": arn}
    result, aws = run(config)
    assert calls(aws) == ["cognito-idp:UpdateUserPool"]
    assert idp().describe_user_pool(UserPoolId=pool_id)["UserPool"]["LambdaConfig"][
        "PreSignUp"] == arn
    assert_converged(config)
