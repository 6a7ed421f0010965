"""Step vpc-integrate against in-process moto: what it creates, what it adopts, that a
second apply makes no mutating call, and that its preflight fails on a missing path."""

from __future__ import annotations

import json

import boto3
import pytest

from runbook import config as config_mod
from runbook.aws.clients import ClientFactory
from runbook.steps import new_runner
from runbook.errors import StepFailed
from runbook.output.progress import Progress
from tests.conftest import REGION
from tests.functional.conftest import Clock

STEP = "vpc-integrate"
SECRETS = f"com.amazonaws.{REGION}.secretsmanager"
DATA_API = f"com.amazonaws.{REGION}.rds-data"


@pytest.fixture
def config(write_config):
    """config/prod.yaml without phase a4: the endpoints a1..a3 need. The tests of a4's
    EventBridge endpoint add it back."""
    def a3_only(data):
        del data["phases"]["a4"]

    return config_mod.load(write_config(a3_only))


def runner(config, *, plan_only=False, clock=None):
    """A fresh factory and runner, as a separate `runbook` invocation would have."""
    aws = ClientFactory(REGION)
    clock = clock or Clock()
    return new_runner(config, aws, Progress(quiet=True), plan_only=plan_only, sleep=clock.sleep,
                  clock=clock), aws


def run(config, names, *, plan_only=False):
    run_with, aws = runner(config, plan_only=plan_only)
    return {r.name: r for r in run_with.run(names)}, aws


@pytest.fixture
def a1(account, config):
    """network and database applied; their outputs."""
    results, _ = run(config, ["network", "database"])
    assert all(r.status == "ok" for r in results.values()), [r.error for r in results.values()]
    return {name: r.outputs for name, r in results.items()}


def ec2():
    return boto3.client("ec2", region_name=REGION)


def groups_in(vpc_id):
    return {g["GroupName"]: g for g in ec2().describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["SecurityGroups"]}


def live_endpoints(vpc_id):
    return [e for e in ec2().describe_vpc_endpoints(
        Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["VpcEndpoints"]
        if e["State"] not in ("deleted", "deleting")]


def tags_of(item):
    return {t["Key"]: t["Value"] for t in item.get("Tags") or ()}


def pairs(group, port):
    """Group ids allowed in on exactly TCP `port` by `group`'s ingress."""
    return [p["GroupId"] for perm in group["IpPermissions"]
            if perm["IpProtocol"] == "tcp" and perm.get("FromPort") == port == perm.get("ToPort")
            for p in perm["UserIdGroupPairs"]]


DEFAULT_EGRESS = ("out", "-1", -1, -1, "0.0.0.0/0")


def rules_of(group) -> set:
    """Every rule of `group`, one per peer, as (direction, protocol, from, to, peer)."""
    found = ec2().describe_security_group_rules(
        Filters=[{"Name": "group-id", "Values": [group["GroupId"]]}])["SecurityGroupRules"]
    return {("out" if r["IsEgress"] else "in", r["IpProtocol"], r.get("FromPort"),
             r.get("ToPort"), (r.get("ReferencedGroupInfo") or {}).get("GroupId")
             or r.get("CidrIpv4") or r.get("CidrIpv6") or r.get("PrefixListId"))
            for r in found}


# -- what it creates ------------------------------------------------------------------

def test_first_apply_creates_two_groups_the_rules_and_two_private_dns_endpoints(a1, config):
    vpc_id, subnets = a1["network"]["vpc_id"], a1["network"]["subnet_ids"]

    results, aws = run(config, [STEP])

    step = results[STEP]
    assert step.status == "ok", step.error
    calls = sorted(e["call"] for e in aws.journal.entries)
    assert calls == ["ec2:AuthorizeSecurityGroupIngress"] * 2 + ["ec2:CreateSecurityGroup"] * 2 \
        + ["ec2:CreateVpcEndpoint"] * 2 + ["ec2:RevokeSecurityGroupEgress"]
    groups = groups_in(vpc_id)
    assert sorted(groups) == ["default", "matbakh-prod-db", "matbakh-prod-endpoints",
                              "matbakh-prod-lambda"]
    lam, endpoints_group = groups["matbakh-prod-lambda"], groups["matbakh-prod-endpoints"]
    rds_group = groups["matbakh-prod-db"]
    assert rds_group["GroupId"] == a1["database"]["security_group_id"]
    assert pairs(rds_group, 5432) == [lam["GroupId"]]
    [rule] = [p for perm in rds_group["IpPermissions"] for p in perm["UserIdGroupPairs"]]
    assert rule["Description"]
    assert pairs(endpoints_group, 443) == [lam["GroupId"]]
    # The whole rule set of each group: nothing else in; out, AWS's default from the
    # functions and from the cluster (Aurora's aws_s3, aws_lambda and ML features).
    assert rules_of(rds_group) == {("in", "tcp", 5432, 5432, lam["GroupId"]), DEFAULT_EGRESS}
    assert rules_of(endpoints_group) == {("in", "tcp", 443, 443, lam["GroupId"])}
    assert rules_of(lam) == {("out", "-1", -1, -1, "0.0.0.0/0")}
    for group in (lam, endpoints_group):
        assert tags_of(group)["runbook:env"] == "prod" and tags_of(group)["runbook:step"] == STEP

    endpoints = {e["ServiceName"]: e for e in live_endpoints(vpc_id)}
    assert sorted(endpoints) == sorted([SECRETS, DATA_API])
    for endpoint in endpoints.values():
        assert endpoint["VpcEndpointType"] == "Interface"
        assert endpoint["PrivateDnsEnabled"] is True
        assert sorted(endpoint["SubnetIds"]) == sorted(subnets)
        assert [g["GroupId"] for g in endpoint["Groups"]] == [endpoints_group["GroupId"]]
        assert tags_of(endpoint)["runbook:step"] == STEP

    assert step.outputs == {
        "lambda_security_group_id": lam["GroupId"],
        "endpoint_security_group_id": endpoints_group["GroupId"],
        "subnet_ids": subnets,
        "vpc_id": vpc_id,
        "endpoints": {"secretsmanager": endpoints[SECRETS]["VpcEndpointId"],
                      "rds-data": endpoints[DATA_API]["VpcEndpointId"]},
    }


def test_second_apply_plans_nothing_and_makes_no_mutating_call(a1, config):
    first, _ = run(config, [STEP])
    assert first[STEP].status == "ok" and first[STEP].changed

    again, aws = run(config, [STEP])

    step = again[STEP]
    assert step.status == "ok", step.error
    assert step.changes == []
    assert step.api_calls["write"] == 0 and step.api_calls["read"] > 0
    assert aws.journal.entries == []
    assert step.outputs == first[STEP].outputs


def test_plan_only_lists_every_change_and_writes_nothing(a1, config):
    results, aws = run(config, [STEP], plan_only=True)

    step = results[STEP]
    assert step.status == "ok", step.error
    assert [(c.action, c.resource) for c in step.changes] == [
        ("create", "ec2:security-group matbakh-prod-lambda"),
        ("create", "ec2:security-group matbakh-prod-endpoints"),
        ("create", "ec2:ingress-rule matbakh-prod-db tcp/5432 from matbakh-prod-lambda"),
        ("create", "ec2:ingress-rule matbakh-prod-endpoints tcp/443 from matbakh-prod-lambda"),
        ("create", "ec2:vpc-endpoint matbakh-prod-secretsmanager"),
        ("create", "ec2:vpc-endpoint matbakh-prod-rds-data"),
    ]
    assert aws.total("write") == 0 and aws.journal.entries == []
    assert sorted(groups_in(a1["network"]["vpc_id"])) == ["default", "matbakh-prod-db"]
    assert live_endpoints(a1["network"]["vpc_id"]) == []


def test_plan_only_on_an_empty_account_plans_with_unknown_ids(account, config):
    results, aws = run(config, ["network", "database", STEP], plan_only=True)
    step = results[STEP]
    assert step.status == "ok", step.error
    assert len(step.changes) == 6 and all(c.action == "create" for c in step.changes)
    assert step.outputs["lambda_security_group_id"] == "(known after apply)"
    assert aws.total("write") == 0


# -- adoption -------------------------------------------------------------------------

def test_a_lambda_group_made_outside_runbook_is_adopted_and_tagged_not_duplicated(a1, config):
    vpc_id = a1["network"]["vpc_id"]
    made = ec2().create_security_group(GroupName="matbakh-prod-lambda", VpcId=vpc_id,
                                       Description="made by lambda-vpc-integration.sh")["GroupId"]

    results, aws = run(config, [STEP])

    step = results[STEP]
    assert step.status == "ok", step.error
    assert step.outputs["lambda_security_group_id"] == made
    assert [e["call"] for e in aws.journal.entries].count("ec2:CreateSecurityGroup") == 1
    assert sum(g["GroupName"] == "matbakh-prod-lambda"
               for g in groups_in(vpc_id).values()) == 1
    tags = tags_of(groups_in(vpc_id)["matbakh-prod-lambda"])
    assert tags["runbook:env"] == "prod" and tags["runbook:step"] == STEP
    assert pairs(groups_in(vpc_id)["matbakh-prod-db"], 5432) == [made]
    assert run(config, [STEP])[0][STEP].api_calls["write"] == 0


def test_an_endpoint_made_outside_runbook_is_adopted_and_completed_not_duplicated(a1, config):
    vpc_id, subnets = a1["network"]["vpc_id"], a1["network"]["subnet_ids"]
    made = ec2().create_vpc_endpoint(VpcEndpointType="Interface", VpcId=vpc_id,
                                     ServiceName=SECRETS, SubnetIds=subnets[:1],
                                     PrivateDnsEnabled=True)["VpcEndpoint"]["VpcEndpointId"]

    results, aws = run(config, [STEP])

    step = results[STEP]
    assert step.status == "ok", step.error
    assert step.outputs["endpoints"]["secretsmanager"] == made
    [update] = [c for c in step.changes if c.op == "update"]
    assert update.diff["subnets"] == {"from": subnets[:1], "to": subnets}
    assert update.diff["security_groups"]["from"] == []
    assert "private_dns" not in update.diff
    calls = [e["call"] for e in aws.journal.entries]
    assert calls.count("ec2:CreateVpcEndpoint") == 1  # rds-data only
    [adopted] = [e for e in live_endpoints(vpc_id) if e["ServiceName"] == SECRETS]
    assert adopted["VpcEndpointId"] == made
    assert sorted(adopted["SubnetIds"]) == sorted(subnets)
    assert [g["GroupId"] for g in adopted["Groups"]] == [step.outputs["endpoint_security_group_id"]]
    assert tags_of(adopted)["runbook:step"] == STEP
    again, aws = run(config, [STEP])
    assert again[STEP].changes == [] and aws.journal.entries == []


def test_adopting_an_endpoint_without_private_dns_plans_to_turn_it_on(a1, config):
    vpc_id, subnets = a1["network"]["vpc_id"], a1["network"]["subnet_ids"]
    made = ec2().create_vpc_endpoint(VpcEndpointType="Interface", VpcId=vpc_id,
                                     ServiceName=SECRETS, SubnetIds=subnets,
                                     PrivateDnsEnabled=False)["VpcEndpoint"]["VpcEndpointId"]
    results, aws = run(config, [STEP], plan_only=True)
    [update] = [c for c in results[STEP].changes if c.op == "update"]
    assert update.resource == f"ec2:vpc-endpoint matbakh-prod-secretsmanager ({made})"
    assert update.diff["private_dns"] == {"from": False, "to": True}
    assert "subnets" not in update.diff
    assert aws.total("write") == 0


def test_a_modify_that_does_not_take_effect_fails_the_step_instead_of_passing(a1, config):
    # moto 5.2.5 accepts ModifyVpcEndpoint(PrivateDnsEnabled=True) and ignores it. AWS
    # applies it; either way runbook describes again and does not take the write on trust.
    vpc_id, subnets = a1["network"]["vpc_id"], a1["network"]["subnet_ids"]
    made = ec2().create_vpc_endpoint(VpcEndpointType="Interface", VpcId=vpc_id,
                                     ServiceName=DATA_API, SubnetIds=subnets,
                                     PrivateDnsEnabled=False)["VpcEndpoint"]["VpcEndpointId"]

    results, _ = run(config, [STEP])

    step = results[STEP]
    assert step.status == "failed" and step.error_kind == "failure"
    assert "convergence" in step.error and made in step.error
    assert "private_dns: False -> True" in step.error


@pytest.mark.parametrize("permission", [
    {"IpProtocol": "tcp", "FromPort": 5000, "ToPort": 6000},
    {"IpProtocol": "-1"},
], ids=["port-range", "all-traffic"])
def test_a_broader_rule_and_a_rule_of_someone_else_are_replaced_by_the_exact_rule(
        a1, config, permission):
    # What the old scripts or an operator left on the cluster's group: the Lambda group
    # on more ports than the database's, and a bastion network. Neither is runbook's rule.
    vpc_id, rds_group = a1["network"]["vpc_id"], a1["database"]["security_group_id"]
    lam = ec2().create_security_group(GroupName="matbakh-prod-lambda", VpcId=vpc_id,
                                      Description="old")["GroupId"]
    ec2().authorize_security_group_ingress(GroupId=rds_group, IpPermissions=[
        dict(permission, UserIdGroupPairs=[{"GroupId": lam}])])
    ec2().authorize_security_group_ingress(GroupId=rds_group, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432,
         "IpRanges": [{"CidrIp": "10.9.0.0/16", "Description": "bastion"}]}])

    plan, _ = run(config, [STEP], plan_only=True)
    rules = [(c.action, c.resource) for c in plan[STEP].changes if "-rule " in c.resource]
    broader = "all traffic" if permission["IpProtocol"] == "-1" else "tcp/5000-6000"
    assert rules[:2] == [
        ("create", "ec2:ingress-rule matbakh-prod-db tcp/5432 from matbakh-prod-lambda"),
        ("create", "ec2:ingress-rule matbakh-prod-endpoints tcp/443 from matbakh-prod-lambda")]
    assert sorted(rules[2:]) == sorted([
        ("delete", "ec2:ingress-rule matbakh-prod-db tcp/5432 from 10.9.0.0/16"),
        ("delete", f"ec2:ingress-rule matbakh-prod-db {broader} from matbakh-prod-lambda")])

    results, aws = run(config, [STEP])

    step = results[STEP]
    assert step.status == "ok", step.error
    assert rules_of(groups_in(vpc_id)["matbakh-prod-db"]) == {("in", "tcp", 5432, 5432, lam),
                                                              DEFAULT_EGRESS}
    calls = [e["call"] for e in aws.journal.entries]
    assert calls.count("ec2:RevokeSecurityGroupIngress") == 2
    # The exact rule is added before the broader one goes: the path is never cut.
    assert calls.index("ec2:AuthorizeSecurityGroupIngress") < \
        calls.index("ec2:RevokeSecurityGroupIngress")
    again, aws = run(config, [STEP])
    assert again[STEP].changes == [] and aws.journal.entries == []


def test_a_rule_removed_outside_runbook_is_added_again(a1, config):
    out = run(config, [STEP])[0][STEP].outputs
    rds_group, lam = a1["database"]["security_group_id"], out["lambda_security_group_id"]
    # By rule id: moto 5.2.5, unlike AWS, only revokes by permission if the Description matches.
    [rule] = [r["SecurityGroupRuleId"] for r in ec2().describe_security_group_rules(
        Filters=[{"Name": "group-id", "Values": [rds_group]}])["SecurityGroupRules"]
        if not r["IsEgress"]]
    ec2().revoke_security_group_ingress(GroupId=rds_group, SecurityGroupRuleIds=[rule])
    assert pairs(groups_in(a1["network"]["vpc_id"])["matbakh-prod-db"], 5432) == []

    results, aws = run(config, [STEP])

    assert [c.resource for c in results[STEP].changes] == [
        "ec2:ingress-rule matbakh-prod-db tcp/5432 from matbakh-prod-lambda"]
    assert [e["call"] for e in aws.journal.entries] == ["ec2:AuthorizeSecurityGroupIngress"]
    assert pairs(groups_in(a1["network"]["vpc_id"])["matbakh-prod-db"], 5432) == [lam]


# -- refusals and the preflight -------------------------------------------------------

def test_a_vpc_without_dns_hostnames_is_refused_before_any_write(a1, config):
    # moto creates a private-DNS endpoint in such a VPC; AWS refuses it.
    ec2().modify_vpc_attribute(VpcId=a1["network"]["vpc_id"], EnableDnsHostnames={"Value": False})

    results, aws = run(config, [STEP])

    step = results[STEP]
    assert step.status == "failed" and step.error_kind == "input"
    assert "enableDnsHostnames is off" in step.error
    assert "runbook run --step network" in step.error
    assert aws.total("write") == 0


def test_an_endpoint_deleted_outside_runbook_is_planned_again_and_recreated(a1, config):
    first = run(config, [STEP])[0][STEP].outputs
    old = first["endpoints"]["secretsmanager"]
    ec2().delete_vpc_endpoints(VpcEndpointIds=[old])  # still listed by moto, as "deleted"

    plan, _ = run(config, [STEP], plan_only=True)
    assert [(c.action, c.resource) for c in plan[STEP].changes] == [
        ("create", "ec2:vpc-endpoint matbakh-prod-secretsmanager")]

    results, aws = run(config, [STEP])
    step = results[STEP]
    assert step.status == "ok", step.error
    assert [e["call"] for e in aws.journal.entries] == ["ec2:CreateVpcEndpoint"]
    assert step.outputs["endpoints"]["secretsmanager"] not in (old, "(known after apply)")


def test_without_the_secrets_manager_endpoint_the_preflight_fails_naming_it(a1, config):
    run(config, [STEP])
    vpc_id = a1["network"]["vpc_id"]
    [endpoint] = [e for e in live_endpoints(vpc_id) if e["ServiceName"] == SECRETS]
    ec2().delete_vpc_endpoints(VpcEndpointIds=[endpoint["VpcEndpointId"]])
    # The step is kept from re-creating it: only read and settle run, as on a re-run
    # whose plan was not applied.
    run_with, aws = runner(config)
    step = run_with.step("vpc-integrate")

    with pytest.raises(StepFailed) as failed:
        step.settle(step.read())

    message = str(failed.value)
    assert "reachability preflight" in message
    for subnet in a1["network"]["subnet_ids"]:
        assert (f"no route to Secrets Manager from subnet {subnet}: no secretsmanager "
                f"interface endpoint with private DNS in {vpc_id}") in message
    assert "no 0.0.0.0/0 route to a NAT gateway" in message
    assert aws.total("write") == 0


def test_a_lambda_group_whose_egress_stops_the_db_port_fails_the_preflight(a1, config):
    run(config, [STEP])
    lam = groups_in(a1["network"]["vpc_id"])["matbakh-prod-lambda"]["GroupId"]
    ec2().revoke_security_group_egress(GroupId=lam, IpPermissions=[
        {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    ec2().authorize_security_group_egress(GroupId=lam, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
         "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    # Only read and settle run, as on a re-run whose plan was not applied.
    run_with, aws = runner(config)
    step = run_with.step("vpc-integrate")

    with pytest.raises(StepFailed) as failed:
        step.settle(step.read())

    assert (f"the Lambda security group {lam} does not allow outbound TCP 5432 to the RDS "
            f"security group {a1['database']['security_group_id']}") in str(failed.value)
    assert aws.total("write") == 0


def revoke_default_egress(group_id, cidr="0.0.0.0/0"):
    ranges = ({"Ipv6Ranges": [{"CidrIpv6": cidr}]} if ":" in cidr
              else {"IpRanges": [{"CidrIp": cidr}]})
    ec2().revoke_security_group_egress(GroupId=group_id, IpPermissions=[
        {"IpProtocol": "-1", **ranges}])


def test_egress_changed_outside_runbook_is_put_back_on_every_group(a1, config):
    run(config, [STEP])
    groups = groups_in(a1["network"]["vpc_id"])
    lam, endpoints_group = groups["matbakh-prod-lambda"], groups["matbakh-prod-endpoints"]
    rds_group = groups["matbakh-prod-db"]
    for group in (lam, rds_group):
        revoke_default_egress(group["GroupId"])
    ec2().authorize_security_group_egress(GroupId=lam["GroupId"], IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
         "IpRanges": [{"CidrIp": "1.2.3.4/32"}]}])
    ec2().authorize_security_group_egress(GroupId=rds_group["GroupId"], IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
         "IpRanges": [{"CidrIp": "198.51.100.0/24"}]}])
    ec2().authorize_security_group_egress(GroupId=endpoints_group["GroupId"], IpPermissions=[
        {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])

    results, aws = run(config, [STEP])

    step = results[STEP]
    assert step.status == "ok", step.error
    assert [(c.action, c.resource) for c in step.changes] == [
        ("create", "ec2:egress-rule matbakh-prod-db all traffic to 0.0.0.0/0"),
        ("create", "ec2:egress-rule matbakh-prod-lambda all traffic to 0.0.0.0/0"),
        ("delete", "ec2:egress-rule matbakh-prod-db tcp/443 to 198.51.100.0/24"),
        ("delete", "ec2:egress-rule matbakh-prod-endpoints all traffic to 0.0.0.0/0"),
        ("delete", "ec2:egress-rule matbakh-prod-lambda tcp/22 to 1.2.3.4/32")]
    assert sorted(e["call"] for e in aws.journal.entries) == [
        "ec2:AuthorizeSecurityGroupEgress"] * 2 + ["ec2:RevokeSecurityGroupEgress"] * 3
    groups = groups_in(a1["network"]["vpc_id"])
    assert rules_of(groups["matbakh-prod-lambda"]) == {DEFAULT_EGRESS}
    assert rules_of(groups["matbakh-prod-db"]) == {
        ("in", "tcp", 5432, 5432, lam["GroupId"]), DEFAULT_EGRESS}
    assert [r[0] for r in rules_of(groups["matbakh-prod-endpoints"])] == ["in"]
    again, aws = run(config, [STEP])
    assert again[STEP].changes == [] and aws.journal.entries == []


def test_a_cluster_group_left_without_egress_gets_aws_default_back(a1, config):
    # What an earlier runbook left on an existing cluster: the group without egress, so
    # aws_s3 import/export, aws_lambda and Aurora ML could not connect out.
    rds_group = a1["database"]["security_group_id"]
    revoke_default_egress(rds_group)

    plan, _ = run(config, [STEP], plan_only=True)
    assert [(c.action, c.resource) for c in plan[STEP].changes
            if "matbakh-prod-db " in c.resource and "-rule " in c.resource] == [
        ("create", "ec2:ingress-rule matbakh-prod-db tcp/5432 from matbakh-prod-lambda"),
        ("create", "ec2:egress-rule matbakh-prod-db all traffic to 0.0.0.0/0")]

    results, _ = run(config, [STEP])

    assert results[STEP].status == "ok", results[STEP].error
    lam = results[STEP].outputs["lambda_security_group_id"]
    assert rules_of(groups_in(a1["network"]["vpc_id"])["matbakh-prod-db"]) == {
        ("in", "tcp", 5432, 5432, lam), DEFAULT_EGRESS}
    again, aws = run(config, [STEP])
    assert again[STEP].changes == [] and aws.journal.entries == []


def test_in_a_vpc_with_ipv6_the_default_ipv6_egress_is_kept_where_the_default_is(a1, config):
    # moto, like AWS for a VPC's default group, gives a new group all traffic to ::/0 too
    # once the VPC has an IPv6 block. It is part of the default egress: kept on the Lambda
    # and the cluster's groups, removed with the rest from the endpoints group.
    vpc_id, rds_group = a1["network"]["vpc_id"], a1["database"]["security_group_id"]
    ec2().associate_vpc_cidr_block(VpcId=vpc_id, AmazonProvidedIpv6CidrBlock=True)
    ec2().authorize_security_group_egress(GroupId=rds_group, IpPermissions=[
        {"IpProtocol": "-1", "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}])

    results, aws = run(config, [STEP])

    step = results[STEP]
    assert step.status == "ok", step.error
    assert not [c for c in step.changes if c.action == "delete"]
    groups = groups_in(vpc_id)
    ipv6_out = ("out", "-1", -1, -1, "::/0")
    lam = groups["matbakh-prod-lambda"]["GroupId"]
    assert rules_of(groups["matbakh-prod-lambda"]) == {DEFAULT_EGRESS, ipv6_out}
    assert rules_of(groups["matbakh-prod-db"]) == {("in", "tcp", 5432, 5432, lam),
                                                   DEFAULT_EGRESS, ipv6_out}
    assert rules_of(groups["matbakh-prod-endpoints"]) == {("in", "tcp", 443, 443, lam)}
    again, aws = run(config, [STEP])
    assert again[STEP].changes == [] and aws.journal.entries == []
    # Not kept, nor added, where it is not the default: the Lambda group without it stays so.
    revoke_default_egress(lam, "::/0")
    assert run(config, [STEP], plan_only=True)[0][STEP].changes == []


def test_without_ipv6_in_the_vpc_an_ipv6_egress_on_the_cluster_group_is_drift(a1, config):
    run(config, [STEP])
    rds_group = a1["database"]["security_group_id"]
    ec2().authorize_security_group_egress(GroupId=rds_group, IpPermissions=[
        {"IpProtocol": "-1", "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}])

    plan, _ = run(config, [STEP], plan_only=True)

    assert [(c.action, c.resource) for c in plan[STEP].changes] == [
        ("delete", "ec2:egress-rule matbakh-prod-db all traffic to ::/0")]


def test_a_removal_shows_the_rule_it_removes_and_not_its_description(a1, config):
    run(config, [STEP])
    rds_group = a1["database"]["security_group_id"]
    ec2().authorize_security_group_ingress(GroupId=rds_group, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "IpRanges": [
            {"CidrIp": "0.0.0.0/0", "Description": "vendor access pw=Hunter2-not-for-plans"}]}])

    plan, _ = run(config, [STEP], plan_only=True)

    [change] = plan[STEP].changes
    [rule_id] = [r["SecurityGroupRuleId"] for r in ec2().describe_security_group_rules(
        Filters=[{"Name": "group-id", "Values": [rds_group]}])["SecurityGroupRules"]
        if r.get("CidrIpv4") == "0.0.0.0/0" and not r["IsEgress"]]
    assert change.describe() == ("- ec2:ingress-rule matbakh-prod-db tcp/5432 from 0.0.0.0/0 "
                                 f"(group: {rds_group}, rule_id: {rule_id})")
    assert "Hunter2" not in str(change.as_report())


def test_a_rule_already_removed_when_the_revoke_arrives_counts_as_done(a1, config):
    # A revoke sent again after its answer was lost, or a rule someone else removed
    # between plan and apply: either way the rule is gone, which is what was planned.
    run(config, [STEP])
    rds_group = a1["database"]["security_group_id"]
    ec2().authorize_security_group_ingress(GroupId=rds_group, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432,
         "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    run_with, aws = runner(config)
    step = run_with.step("vpc-integrate")
    state = step.read()
    [change] = step.plan(state)
    assert (change.action, change.op) == ("delete", "revoke")
    step.apply(state, change)

    assert step.apply(state, change) is False
    assert step.plan(state) == []
    assert step.plan(step.read()) == []


def test_endpoints_take_one_subnet_per_zone(account, write_config):
    # AWS refuses a second subnet in a zone for one endpoint (moto accepts it); the
    # functions still run in all three subnets.
    def two_in_one_zone(data):
        data["network"]["subnets"][2]["az"] = "eu-central-1a"

    config = config_mod.load(write_config(two_in_one_zone))
    results, _ = run(config, ["network", "database", STEP])
    assert all(r.status == "ok" for r in results.values()), [r.error for r in results.values()]
    subnets = results["network"].outputs["subnet_ids"]

    step = results[STEP]
    assert step.outputs["subnet_ids"] == subnets
    for endpoint in live_endpoints(step.outputs["vpc_id"]):
        assert sorted(endpoint["SubnetIds"]) == sorted(subnets[:2])
    again, aws = run(config, [STEP])
    assert again[STEP].changes == [] and aws.journal.entries == []


def endpoint_policies(vpc_id) -> dict:
    return {e["ServiceName"]: json.loads(e["PolicyDocument"]) for e in live_endpoints(vpc_id)}


def test_endpoints_admit_only_this_accounts_principals_and_the_actions_used_here(a1, config):
    vpc_id = a1["network"]["vpc_id"]
    results, _ = run(config, [STEP])
    assert results[STEP].status == "ok", results[STEP].error

    found = endpoint_policies(vpc_id)
    assert sorted(found) == sorted([SECRETS, DATA_API])
    for policy in found.values():
        for statement in policy["Statement"]:
            assert not any("*" in action for action in statement["Action"])
            # BatchGetSecretValue alone, which AWS authorizes on "*" only.
            assert statement["Resource"] != "*" or statement["Action"] == [
                "secretsmanager:BatchGetSecretValue"]
            assert statement["Condition"] == {
                "StringEquals": {"aws:PrincipalAccount": "123456789012"}}
    secrets = found[SECRETS]["Statement"]
    assert {s["Sid"] for s in secrets} == {"ReadTheSecrets", "ReadTheSecretsInOneCall",
                                           "KeepTheSecrets"}
    assert secrets[0]["Resource"] == [
        f"arn:aws:secretsmanager:{REGION}:123456789012:secret:matbakh-db-postgres-??????",
        f"arn:aws:secretsmanager:{REGION}:123456789012:secret:matbakh-app-config-??????"]
    [data_api] = found[DATA_API]["Statement"]
    assert data_api["Resource"] == f"arn:aws:rds:{REGION}:123456789012:cluster:matbakh-prod"


def test_an_adopted_endpoint_with_aws_default_full_access_policy_gets_the_endpoint_policy(
        a1, config):
    # Made without a policy, an endpoint lets any principal do anything through it.
    vpc_id, subnets = a1["network"]["vpc_id"], a1["network"]["subnet_ids"]
    made = ec2().create_vpc_endpoint(VpcEndpointType="Interface", VpcId=vpc_id,
                                     ServiceName=SECRETS, SubnetIds=subnets,
                                     PrivateDnsEnabled=True)["VpcEndpoint"]["VpcEndpointId"]
    assert endpoint_policies(vpc_id)[SECRETS]["Statement"][0]["Action"] == "*"

    results, aws = run(config, [STEP])

    step = results[STEP]
    assert step.status == "ok", step.error
    [update] = [c for c in step.changes if c.op == "update"]
    assert update.resource == f"ec2:vpc-endpoint matbakh-prod-secretsmanager ({made})"
    assert update.diff["policy"]["from"] == ["* on *"]
    assert update.diff["policy"]["to"][0].startswith("secretsmanager:DescribeSecret, "
                                                     "secretsmanager:GetSecretValue on ")
    assert [s["Sid"] for s in endpoint_policies(vpc_id)[SECRETS]["Statement"]] == [
        "ReadTheSecrets", "ReadTheSecretsInOneCall", "KeepTheSecrets"]
    again, aws = run(config, [STEP])
    assert again[STEP].changes == [] and aws.journal.entries == []


# -- phase a4: EventBridge from the private subnets -------------------------------------

def test_with_phase_a4_an_eventbridge_endpoint_is_made_with_a_bus_only_policy(a1, write_config):
    def with_a4(data):
        data["phases"]["a4"] = ["event-bus"]

    config = config_mod.load(write_config(with_a4))
    vpc_id = a1["network"]["vpc_id"]
    results, _ = run(config, [STEP])
    assert results[STEP].status == "ok", results[STEP].error
    [events] = [e for e in live_endpoints(vpc_id)
                if e["ServiceName"] == f"com.amazonaws.{REGION}.events"]
    assert events["PrivateDnsEnabled"] and events["VpcEndpointType"] == "Interface"
    publish, routing = json.loads(events["PolicyDocument"])["Statement"]
    assert (publish["Sid"], publish["Action"]) == ("PublishRegistrations", ["events:PutEvents"])
    assert publish["Resource"].endswith(":event-bus/matbakh-prod-events")
    # runbook's own calls, run inside the VPC: on the bus and the two rules, nothing else.
    assert routing["Sid"] == "KeepTheRouting"
    assert not any(a.startswith(("events:Delete", "events:Remove")) for a in routing["Action"])
    assert [r.rsplit(":", 1)[1] for r in routing["Resource"]] == [
        "event-bus/matbakh-prod-events", "rule/matbakh-prod-events/matbakh-prod-user-registered",
        "rule/matbakh-prod-registration-relay"]
    for statement in (publish, routing):
        assert statement["Condition"] == {"StringEquals": {"aws:PrincipalAccount": "123456789012"}}
    assert results[STEP].outputs["endpoints"]["events"] == events["VpcEndpointId"]

    again, aws = run(config, [STEP])
    assert again[STEP].status == "ok" and again[STEP].changes == []
    assert aws.total("write") == 0


def test_without_phase_a4_no_eventbridge_endpoint_is_made(a1, config):
    results, _ = run(config, [STEP])
    assert results[STEP].status == "ok"
    assert "events" not in results[STEP].outputs["endpoints"]
    assert not [e for e in live_endpoints(a1["network"]["vpc_id"])
                if e["ServiceName"].endswith(".events")]
