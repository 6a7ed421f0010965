"""`runbook plan` and `runbook status` (from the reports, and `--live` against the account)
as an operator runs them: live against a moto server, and after a dry run.

Live against moto, fix-tables cannot reach the cluster (its endpoint resolves nowhere)
and so deploy-post-confirmation cannot be applied; the drift tests apply and check the
steps that can: a1, a2 and vpc-integrate.
"""

from __future__ import annotations

import json

import boto3
import pytest
import yaml

from runbook.aws import userpool
from tests.conftest import REGION

CONVERGED = ["--phase", "a1", "--phase", "a2", "--step", "vpc-integrate"]
DB_RULE = "ec2:ingress-rule matbakh-prod-db tcp/5432 from matbakh-prod-lambda"


def client(service, endpoint):
    return boto3.client(service, region_name=REGION, endpoint_url=endpoint)


def account_contents(endpoint) -> dict:
    """What an a2/a3 run would add, as another client sees it."""
    ec2, iam = client("ec2", endpoint), client("iam", endpoint)
    return {
        "groups": sorted(g["GroupName"] for g in ec2.describe_security_groups()["SecurityGroups"]),
        "rules": sorted(json.dumps(g["IpPermissions"], sort_keys=True)
                        for g in ec2.describe_security_groups()["SecurityGroups"]),
        "endpoints": ec2.describe_vpc_endpoints()["VpcEndpoints"],
        "pools": client("cognito-idp", endpoint).list_user_pools(MaxResults=60)["UserPools"],
        "functions": client("lambda", endpoint).list_functions()["Functions"],
        "layers": client("lambda", endpoint).list_layers()["Layers"],
        "roles": iam.list_roles()["Roles"],
        "log_groups": client("logs", endpoint).describe_log_groups()["logGroups"],
    }


def connect_through_lambda(workdir) -> None:
    """database.connect: lambda, so that fix-tables plans without reaching the database."""
    path = workdir / "config" / "prod.yaml"
    data = yaml.safe_load(path.read_text())
    data["database"]["connect"] = "lambda"
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def revoke_db_rule(endpoint) -> None:
    """Another client removes the Lambda -> cluster rule that vpc-integrate added."""
    ec2 = client("ec2", endpoint)
    group = ec2.describe_security_groups(Filters=[
        {"Name": "group-name", "Values": ["matbakh-prod-db"]}])["SecurityGroups"][0]
    assert group["IpPermissions"], "vpc-integrate added the 5432 rule"
    ec2.revoke_security_group_ingress(GroupId=group["GroupId"],
                                      IpPermissions=group["IpPermissions"])


def test_plan_of_a3_after_a1_lists_the_a2_and_a3_resources_as_creates_and_writes_nothing(
        moto_endpoint, workdir, cli):
    connect_through_lambda(workdir)
    assert cli("run", "--phase", "a1").exit_code == 0
    before = account_contents(moto_endpoint)

    text = cli("plan", "--phase", "a3")
    as_json = cli("plan", "--phase", "a3", "--json")

    assert text.exit_code == 0 and as_json.exit_code == 0, text.output
    assert account_contents(moto_endpoint) == before
    assert before["pools"] == [] and before["functions"] == []
    plan = json.loads(as_json.stdout)
    states = {s["name"]: s["state"] for s in plan["steps"]}
    assert states == {"network": "unchanged", "database": "unchanged",
                      "store-secrets": "unchanged", "cognito": "changes",
                      "vpc-integrate": "changes", "fix-tables": "changes",
                      "db-proxy": "changes", "deploy-post-confirmation": "changes",
                      "integration-test": states["integration-test"]}
    creates = {c["resource"] for s in plan["steps"] for c in s["changes"]
               if c["action"] == "create"}
    for resource in ("cognito-idp:user-pool matbakh-prod-users",
                     "cognito-idp:app-client matbakh-prod-web",
                     "lambda:function matbakh-cognito-pre-signup",
                     "ec2:security-group matbakh-prod-lambda", DB_RULE,
                     "ec2:vpc-endpoint matbakh-prod-secretsmanager",
                     "lambda:function matbakh-cognito-db-migrate",
                     "postgres:migration 0001_profiles.sql.j2",
                     "iam:role matbakh-cognito-post-confirmation-role",
                     "lambda:function matbakh-cognito-post-confirmation"):
        assert resource in creates
        assert f"  + {resource}\n" in text.stdout
    assert {c["action"] for s in plan["steps"] for c in s["changes"]} == {"create", "update"}
    summary = plan["summary"]
    assert summary["add"] == len([c for s in plan["steps"] for c in s["changes"]
                                  if c["action"] == "create"])
    assert (f"Plan: {summary['add']} to add, {summary['change']} to change, 0 to destroy. "
            "3 steps unchanged") in text.stdout
    assert "network (a1): no changes" in text.stdout
    assert plan["run_first"] == ["a2"]
    assert "run `runbook run --phase a2` first" in text.stdout


def test_no_generated_secret_appears_in_plan_or_live_status(moto_endpoint, workdir, cli):
    connect_through_lambda(workdir)
    assert cli("run", "--phase", "a1").exit_code == 0
    sm = client("secretsmanager", moto_endpoint)
    secrets = [json.loads(sm.get_secret_value(SecretId=name)["SecretString"])[key]
               for name, key in (("matbakh-db-postgres", "password"),
                                 ("matbakh-app-config", "jwt_secret"))]
    outputs = [cli("plan", "--phase", "a3", *flag).output for flag in ((), ("--json",))]
    outputs += [cli("status", "--live", *flag).output for flag in ((), ("--json",))]
    for text in outputs:
        assert text.strip()
        for value in secrets:
            assert value not in text


def test_plan_shows_the_step_it_cannot_plan_and_plans_the_others(moto_endpoint, workdir, cli):
    assert cli("run", "--phase", "a1").exit_code == 0

    result = cli("plan", "--phase", "a3")

    assert result.exit_code == 2, result.output
    out = result.stdout
    assert "fix-tables (a3): cannot plan\n  cannot connect to matbakh-prod.cluster-" in out
    assert "database.connect: lambda" in out
    assert ("deploy-post-confirmation (a3): not planned: it needs fix-tables, which could not "
            "be planned") in out
    assert "  + cognito-idp:user-pool matbakh-prod-users" in out
    assert f"  + {DB_RULE}" in out
    assert "1 could not be planned, 2 not planned" in out  # deploy, integration-test
    assert "Traceback" not in result.output


def without_a4(workdir) -> None:
    """The environment file without phases a4 and a5: a4's consumer needs fix-tables,
    which cannot run here, so `status --live` of every step would end at a4's steps,
    and a5's resources, never made here, would be drift of their own. Without step
    db-proxy too: the runs here stop at vpc-integrate, and the proxy not made yet would
    be drift of its own."""
    path = workdir / "config" / "prod.yaml"
    data = yaml.safe_load(path.read_text())
    del data["phases"]["a4"]
    del data["phases"]["a5"]
    data["phases"]["a3"].remove("db-proxy")
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_status_live_shows_no_drift_after_a_run_and_the_rule_another_client_removed(
        moto_endpoint, workdir, cli):
    without_a4(workdir)
    for target in (["--phase", "a1"], ["--phase", "a2"], ["--step", "vpc-integrate"]):
        assert cli("run", *target).exit_code == 0

    in_sync = cli("status", "--live", *CONVERGED)
    everything = cli("status", "--live")

    assert in_sync.exit_code == 0, in_sync.output
    assert "No drift: 5 steps in sync." in in_sync.stdout
    assert "vpc-integrate (a3): in sync" in in_sync.stdout
    # Every step: no drift either, but fix-tables cannot be planned from here (exit 2).
    assert everything.exit_code == 2, everything.output
    assert "fix-tables (a3): cannot plan" in everything.stdout
    assert "deploy-post-confirmation (a3): not planned: it needs fix-tables" in everything.stdout
    assert ("Not known, since not planned: fix-tables, deploy-post-confirmation, "
            "integration-test.") in everything.stdout

    revoke_db_rule(moto_endpoint)
    drifted = cli("status", "--live", *CONVERGED)
    as_json = cli("status", "--live", "--json", *CONVERGED)
    everything = cli("status", "--live")

    assert drifted.exit_code == 3, drifted.output
    assert f"vpc-integrate (a3): drift: 1 to add\n  + {DB_RULE}\n" in drifted.stdout
    assert "Drift in 1 step: vpc-integrate." in drifted.stdout
    assert "`runbook run --step vpc-integrate`" in drifted.stdout
    assert "cognito (a2): in sync" in drifted.stdout
    data = json.loads(as_json.stdout)
    assert as_json.exit_code == 3 and data["exit_code"] == 3
    assert data["drift"] is True and data["drifted_steps"] == ["vpc-integrate"]
    step = next(s for s in data["steps"] if s["name"] == "vpc-integrate")
    assert [(c["action"], c["resource"], c["diff"]["port"]) for c in step["changes"]] == [
        ("create", DB_RULE, 5432)]
    assert everything.exit_code == 3  # drift is reported even beside a step not planned
    # Looking changed nothing: the rule is still gone until a run puts it back.
    assert cli("status", "--live", *CONVERGED).exit_code == 3
    assert cli("run", "--step", "vpc-integrate").exit_code == 0
    assert cli("status", "--live", *CONVERGED).exit_code == 0


def add_drift_of_every_kind(endpoint) -> dict:
    """Another client adds, beside what runbook made, one thing of each kind that
    `status --live` must see; {kind: the line status prints for it}."""
    ec2, iam = client("ec2", endpoint), client("iam", endpoint)
    groups = {g["GroupName"]: g["GroupId"] for g in ec2.describe_security_groups()[
        "SecurityGroups"]}
    ec2.authorize_security_group_ingress(GroupId=groups["matbakh-prod-db"], IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432,
         "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    ec2.authorize_security_group_egress(GroupId=groups["matbakh-prod-lambda"], IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
         "IpRanges": [{"CidrIp": "203.0.113.7/32"}]}])
    ec2.authorize_security_group_egress(GroupId=groups["matbakh-prod-db"], IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
         "IpRanges": [{"CidrIp": "198.51.100.0/24"}]}])
    [secrets] = [e for e in ec2.describe_vpc_endpoints()["VpcEndpoints"]
                 if e["ServiceName"].endswith(".secretsmanager")]
    ec2.modify_vpc_endpoint(VpcEndpointId=secrets["VpcEndpointId"], PolicyDocument=json.dumps(
        {"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*"}]}))

    role = "matbakh-cognito-pre-signup-role"
    everything = {"Version": "2012-10-17",
                  "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    iam.put_role_policy(RoleName=role, PolicyName="debugging",
                        PolicyDocument=json.dumps(everything))
    managed = iam.create_policy(PolicyName="everything",
                                PolicyDocument=json.dumps(everything))["Policy"]["Arn"]
    iam.attach_role_policy(RoleName=role, PolicyArn=managed)

    lam, idp = client("lambda", endpoint), client("cognito-idp", endpoint)
    function = "matbakh-cognito-pre-signup"
    variables = (lam.get_function_configuration(FunctionName=function).get("Environment")
                 or {}).get("Variables") or {}
    lam.update_function_configuration(FunctionName=function, Environment={"Variables": {
        **variables, "API_KEY": "sk-not-for-plans"}})
    [pool] = idp.list_user_pools(MaxResults=60)["UserPools"]
    described = idp.describe_user_pool(UserPoolId=pool["Id"])["UserPool"]
    assert "PreSignUp" in described["LambdaConfig"]
    # The whole configuration back, as the console sends it, without the trigger.
    idp.update_user_pool(**userpool.update_request(described, LambdaConfig={}))
    return {
        "db ingress": "  - ec2:ingress-rule matbakh-prod-db tcp/5432 from 0.0.0.0/0\n",
        "lambda egress": "  - ec2:egress-rule matbakh-prod-lambda tcp/22 to 203.0.113.7/32\n",
        "db egress": "  - ec2:egress-rule matbakh-prod-db tcp/443 to 198.51.100.0/24\n",
        "endpoint policy": "  ~ ec2:vpc-endpoint matbakh-prod-secretsmanager "
                           f"({secrets['VpcEndpointId']})\n      policy:",
        "inline policy": f"  - iam:role-policy {role}/debugging\n",
        "managed policy": f"  - iam:attached-policy {role} {managed}\n",
        "environment": f"  ~ lambda:function {function}\n      environment.API_KEY: (set "
                       "outside runbook; value withheld) -> (removed)\n",
        "trigger": f"  ~ cognito-idp:user-pool matbakh-prod-users ({pool['Id']})\n",
    }


def add_guardrails(endpoint) -> list[str]:
    """A security team's Deny-only policies on the Pre-SignUp role, inline and managed:
    they grant nothing, so they are not drift. Their names and ARNs."""
    iam = client("iam", endpoint)
    role = "matbakh-cognito-pre-signup-role"
    deny = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Deny", "Action": ["iam:*", "organizations:*"], "Resource": "*"}]})
    iam.put_role_policy(RoleName=role, PolicyName="org-guardrail", PolicyDocument=deny)
    managed = iam.create_policy(PolicyName="org-guardrail", PolicyDocument=deny)["Policy"]["Arn"]
    iam.attach_role_policy(RoleName=role, PolicyArn=managed)
    return [f"{role}/org-guardrail", managed]


def test_status_live_sees_what_another_client_added_and_a_run_removes_it(
        moto_endpoint, workdir, cli):
    for target in (["--phase", "a1"], ["--phase", "a2"], ["--step", "vpc-integrate"]):
        assert cli("run", *target).exit_code == 0
    guardrails = add_guardrails(moto_endpoint)
    assert cli("status", "--live", *CONVERGED).exit_code == 0

    lines = add_drift_of_every_kind(moto_endpoint)
    drifted = cli("status", "--live", *CONVERGED)
    as_json = cli("status", "--live", "--json", *CONVERGED)

    assert drifted.exit_code == 3, drifted.output
    for kind, line in lines.items():
        assert line in drifted.stdout, kind
    assert "      trigger PreSignUp: (none) -> arn:aws:lambda:" in drifted.stdout
    assert "sk-not-for-plans" not in drifted.output + as_json.output
    assert not any(name in drifted.output + as_json.output for name in guardrails)
    # AWS's default egress of the cluster's group is not drift.
    assert "matbakh-prod-db all traffic" not in drifted.output
    assert "Drift in 2 steps: cognito, vpc-integrate." in drifted.stdout
    data = json.loads(as_json.stdout)
    assert data["drifted_steps"] == ["cognito", "vpc-integrate"]
    actions = {c["resource"]: c["action"] for s in data["steps"] for c in s["changes"]}
    assert actions["ec2:ingress-rule matbakh-prod-db tcp/5432 from 0.0.0.0/0"] == "delete"

    assert cli("run", "--phase", "a2").exit_code == 0
    assert cli("run", "--step", "vpc-integrate").exit_code == 0

    after = cli("status", "--live", *CONVERGED)
    assert after.exit_code == 0, after.output
    assert "No drift: 5 steps in sync." in after.stdout
    db = client("ec2", moto_endpoint).describe_security_groups(Filters=[
        {"Name": "group-name", "Values": ["matbakh-prod-db"]}])["SecurityGroups"][0]
    assert not any(r.get("CidrIp") == "0.0.0.0/0"
                   for p in db["IpPermissions"] for r in p["IpRanges"])
    assert [(p["IpProtocol"], p["IpRanges"]) for p in db["IpPermissionsEgress"]] == [
        ("-1", [{"CidrIp": "0.0.0.0/0"}])]
    iam = client("iam", moto_endpoint)
    role = "matbakh-cognito-pre-signup-role"
    assert sorted(iam.list_role_policies(RoleName=role)["PolicyNames"]) == [
        "org-guardrail", "runbook"]
    assert [p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=role)[
        "AttachedPolicies"]] == [guardrails[1]]


def test_status_live_shows_a_removed_tag_and_route_table_association_as_network_drift(
        moto_endpoint, workdir, cli):
    assert cli("run", "--phase", "a1").exit_code == 0
    ec2 = client("ec2", moto_endpoint)
    subnet = ec2.describe_subnets(Filters=[
        {"Name": "tag:Name", "Values": [f"matbakh-prod-private-{REGION}a"]}])["Subnets"][0]
    ec2.delete_tags(Resources=[subnet["SubnetId"]], Tags=[{"Key": "project"}])
    table = ec2.describe_route_tables(Filters=[
        {"Name": "association.subnet-id", "Values": [subnet["SubnetId"]]}])["RouteTables"][0]
    for association in table["Associations"]:
        ec2.disassociate_route_table(AssociationId=association["RouteTableAssociationId"])

    result = cli("status", "--live", "--phase", "a1")

    assert result.exit_code == 3, result.output
    out = result.stdout
    assert "network (a1): drift: 2 to change" in out
    assert f"  ~ ec2:subnet matbakh-prod-private-{REGION}a ({subnet['SubnetId']})\n" \
           "      tags.project: (none) -> matbakh\n" in out
    assert f"      subnet: (none) -> {subnet['SubnetId']}\n" in out
    assert "database (a1): in sync" in out


def test_status_live_with_an_unknown_step_exits_2_naming_the_steps(moto_endpoint, workdir, cli):
    result = cli("status", "--live", "--step", "nope")
    assert result.exit_code == 2
    assert "--step nope" in result.stderr and "vpc-integrate" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_status_after_the_a3_dry_run_shows_every_a1_to_a3_step(workdir, cli):
    assert cli("run", "--phase", "a3", "--dry-run").exit_code == 0

    table = cli("status")
    data = json.loads(cli("status", "--json").stdout)

    assert table.exit_code == 0, table.output
    steps = ["network", "database", "store-secrets", "cognito", "vpc-integrate", "fix-tables",
             "db-proxy", "deploy-post-confirmation", "integration-test"]
    assert [(r["mode"], r["step"]) for r in data["steps"]] == [("dry-run", s) for s in steps]
    assert [(p["phase"], p["status"], p["run"]) for p in data["phases"]] == [
        ("a1", "ok", "a3"), ("a2", "ok", "a3"), ("a3", "ok", "a3")]
    assert "runbook status: prod, dry-run runs" in table.stdout
    assert "live runs" not in table.stdout
    for name in steps:
        assert f"  {name} " in table.stdout
