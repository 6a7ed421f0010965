"""Teardown of the EC2 kinds against in-process moto: the VPC, subnets, route tables, the
internet gateway, security groups and their rules, VPC endpoints, and the network
interfaces Lambda leaves behind.

Each environment ("staging", and "prod" beside it in the same account) is made through
the kinds' own `create`, with the tags runbook gives what it creates. For each kind:
`owned` returns exactly staging's, with their tags; `delete` removes it (read back with
plain boto3); `gone` is then True; a second `delete` makes no mutating call; prod's is
untouched. Where moto is laxer than AWS (it deletes a group another group's rule
references, a subnet or group an interface still uses, an interface in use), the test
proves that runbook did what AWS needs rather than rely on moto refusing.
"""

from __future__ import annotations

import boto3
import pytest

from runbook.aws import sgrules
from runbook.aws.api import Api
from runbook.aws.clients import ClientFactory
from runbook.aws.naming import CREATED_TAG, ENV_TAG, STEP_TAG
from runbook.errors import StepFailed
from runbook.resources.internet_gateway import (InternetGateway, InternetGatewaySpec,
                                                PublicRouteTable, PublicRouteTableSpec)
from runbook.resources.network_interface import (AVAILABLE, NetworkInterface, blocking,
                                                 lambda_interfaces)
from runbook.resources.rds import ClusterSecurityGroup
from runbook.resources.security_group import SecurityGroup, SecurityGroupSpec, revoke_references
from runbook.resources.security_group_rule import (RuleSet, RuleSetSpec, RuleFound,
                                                   SecurityGroupRule)
from runbook.resources.vpc import (RouteTable, RouteTableSpec, Subnet, SubnetSpec, Vpc,
                                   VpcSpec)
from runbook.resources.vpc_endpoint import VpcEndpoint, VpcEndpointSpec
from tests.conftest import REGION

ZONE = f"{REGION}a"
CIDRS = {"staging": "10.0", "prod": "10.1"}
VPC, SUBNET, TABLE, PUBLIC = Vpc(), Subnet(), RouteTable(), PublicRouteTable()
GATEWAY, GROUP, CLUSTER_GROUP = InternetGateway(), SecurityGroup(), ClusterSecurityGroup()
RULE, ENDPOINT, INTERFACE = SecurityGroupRule(), VpcEndpoint(), NetworkInterface()



def ec2():
    """Plain boto3, to read back what runbook did."""
    return boto3.client("ec2", region_name=REGION)


def tags(env: str, step: str, name: str | None = None) -> dict:
    out = {ENV_TAG: env, STEP_TAG: step, CREATED_TAG: "true"}
    if name:
        out["Name"] = name
    return out


def network(api: Api, env: str) -> dict:
    """What steps network, database and vpc-integrate make of one environment, each
    through its kind's `create`: {what: Found}."""
    net = CIDRS[env]
    vpc = VPC.create(api, VpcSpec(f"{env}-vpc", tags(env, "network", f"{env}-vpc"),
                                  "network.cidr", cidr=f"{net}.0.0/16"))
    private = SUBNET.create(api, SubnetSpec(f"{env}-private-a", tags(env, "network",
                                                                      f"{env}-private-a"),
                                            "network.subnets[0].cidr", vpc_id=vpc.id,
                                            cidr=f"{net}.1.0/24", az=ZONE))
    public = SUBNET.create(api, SubnetSpec(f"{env}-public-a", tags(env, "network",
                                                                    f"{env}-public-a"),
                                           "network.public_subnets[0].cidr", vpc_id=vpc.id,
                                           cidr=f"{net}.101.0/24", az=ZONE))
    table = TABLE.create(api, RouteTableSpec(f"{env}-private-rt-a",
                                             tags(env, "network", f"{env}-private-rt-a"),
                                             "network.subnets[0].cidr", vpc_id=vpc.id,
                                             subnet_id=private.id))
    gateway = GATEWAY.create(api, InternetGatewaySpec(f"{env}-igw",
                                                      tags(env, "network", f"{env}-igw"),
                                                      "network.public_subnets", vpc_id=vpc.id))
    public_table = PUBLIC.create(api, PublicRouteTableSpec(
        f"{env}-public", tags(env, "network", f"{env}-public"), "network.public_subnets",
        vpc_id=vpc.id, gateway_id=gateway.id, subnet_ids=(public.id,)))
    cluster = CLUSTER_GROUP.create(api, SecurityGroupSpec(
        f"{env}-db", tags(env, "database", f"{env}-db"), "database.security_group_name",
        vpc_id=vpc.id, description="cluster"))
    lam = GROUP.create(api, SecurityGroupSpec(
        f"{env}-lambda", tags(env, "vpc-integrate", f"{env}-lambda"), "network.name",
        vpc_id=vpc.id, description="functions"))
    rule = authorize(api, env, cluster.id, sgrules.Rule.tcp_from(5432, lam.id))
    endpoint = ENDPOINT.create(api, VpcEndpointSpec(
        f"{env}-secretsmanager", tags(env, "vpc-integrate", f"{env}-secretsmanager"),
        "network.name", vpc_id=vpc.id, service="secretsmanager",
        service_name=f"com.amazonaws.{REGION}.secretsmanager", subnets=(private.id,),
        zones={private.id: ZONE}, group_id=lam.id, policy={}))
    return {"vpc": vpc, "private": private, "public": public, "table": table,
            "gateway": gateway, "public_table": public_table, "cluster": cluster,
            "lambda": lam, "rule": rule, "endpoint": endpoint}


def authorize(api: Api, env: str, group_id: str, rule: sgrules.Rule) -> str:
    """An ingress rule added as step vpc-integrate adds it (tagged): its id."""
    found = RuleSet(group_id, {}, {})
    spec = RuleSetSpec("group", tags(env, "vpc-integrate"), "network.name",
                       group_id=group_id, rules=frozenset({rule}), description="test")
    assert RULE.authorize(api, spec, found, rule)
    [rule_id] = found.rules
    return rule_id


@pytest.fixture
def made(api):
    """Both environments, staging's and prod's, in one account."""
    return {env: network(api, env) for env in ("staging", "prod")}


def ids(found: list) -> set[str]:
    return {f.id for f in found}


def writes(aws: ClientFactory) -> int:
    return aws.total("write")


def calls(aws: ClientFactory) -> list[str]:
    """The mutating calls that succeeded, in order."""
    return [entry["call"] for entry in aws.journal.entries]


def assert_second_delete_writes_nothing(aws, api, resource, found) -> None:
    before = writes(aws)
    resource.delete(api, found)
    assert writes(aws) == before
    assert resource.gone(api, found)


# -- the VPC, its subnets, its route tables ----------------------------------------------

def test_vpc_owned_is_staging_only_and_deleted_once_empty(aws, api, made):
    staging, prod = made["staging"], made["prod"]
    owned = VPC.owned(api, "staging")
    assert ids(owned) == {staging["vpc"].id}
    assert owned[0].tags == staging["vpc"].tags
    assert owned[0].cidr == "10.0.0.0/16"
    empty_staging(api, staging)

    VPC.delete(api, owned[0])

    assert ec2().describe_vpcs(Filters=[{"Name": "vpc-id",
                                         "Values": [staging["vpc"].id]}])["Vpcs"] == []
    assert VPC.gone(api, owned[0])
    assert_second_delete_writes_nothing(aws, api, VPC, owned[0])
    assert ids(VPC.owned(api, "prod")) == {prod["vpc"].id}


def test_subnets_owned_are_staging_private_and_public_with_their_tags(aws, api, made):
    staging, prod = made["staging"], made["prod"]
    owned = {s.id: s for s in SUBNET.owned(api, "staging")}
    assert set(owned) == {staging["private"].id, staging["public"].id}
    assert owned[staging["private"].id].tags == staging["private"].tags
    assert owned[staging["public"].id].cidr == "10.0.101.0/24"
    for table in TABLE.owned(api, "staging"):
        TABLE.delete(api, table)

    for subnet in owned.values():
        SUBNET.delete(api, subnet)

    left = ec2().describe_subnets(Filters=[{"Name": "vpc-id",
                                            "Values": [staging["vpc"].id]}])["Subnets"]
    assert left == []
    assert_second_delete_writes_nothing(aws, api, SUBNET, owned[staging["private"].id])
    assert ids(SUBNET.owned(api, "prod")) == {prod["private"].id, prod["public"].id}


def test_route_tables_owned_include_the_public_one_once(api, made):
    staging = made["staging"]
    owned = TABLE.owned(api, "staging")
    assert ids(owned) == {staging["table"].id, staging["public_table"].id}
    by_id = {t.id: t for t in owned}
    assert by_id[staging["table"].id].subnet_ids == [staging["private"].id]
    assert by_id[staging["public_table"].id].internet_route == staging["gateway"].id
    assert by_id[staging["public_table"].id].tags == staging["public_table"].tags
    # The same AWS type: listed by RouteTable alone, not a second time.
    assert PUBLIC.owned(api, "staging") == []


def test_an_associated_route_table_is_disassociated_then_deleted(aws, api, made):
    staging, prod = made["staging"], made["prod"]
    [table] = [t for t in TABLE.owned(api, "staging") if t.id == staging["table"].id]
    assert table.subnet_ids == [staging["private"].id]

    TABLE.delete(api, table)

    assert calls(aws)[-2:] == ["ec2:DisassociateRouteTable", "ec2:DeleteRouteTable"]
    still = ec2().describe_route_tables(Filters=[{"Name": "route-table-id",
                                                  "Values": [table.id]}])["RouteTables"]
    assert still == []
    assert TABLE.gone(api, table)
    assert_second_delete_writes_nothing(aws, api, TABLE, table)
    # The subnet now uses the VPC's main table; prod's table is still associated.
    assert ec2().describe_route_tables(Filters=[
        {"Name": "association.subnet-id", "Values": [staging["private"].id]}])["RouteTables"] == []
    [prod_table] = ec2().describe_route_tables(
        RouteTableIds=[prod["table"].id])["RouteTables"]
    assert [a["SubnetId"] for a in prod_table["Associations"]] == [prod["private"].id]


def test_the_public_route_table_is_deleted_through_route_table(aws, api, made):
    staging = made["staging"]
    [public] = [t for t in TABLE.owned(api, "staging") if t.id == staging["public_table"].id]

    PUBLIC.delete(api, public)

    assert calls(aws)[-2:] == ["ec2:DisassociateRouteTable", "ec2:DeleteRouteTable"]
    assert ids(TABLE.owned(api, "staging")) == {staging["table"].id}
    assert_second_delete_writes_nothing(aws, api, PUBLIC, public)


def test_a_main_route_table_is_never_deleted_nor_disassociated(aws, api, made):
    """A VPC's main table goes with its VPC: one that carries the environment's tag (an
    adopted one) is left as it is."""
    vpc_id = made["staging"]["vpc"].id
    [main] = ec2().describe_route_tables(Filters=[
        {"Name": "vpc-id", "Values": [vpc_id]},
        {"Name": "association.main", "Values": ["true"]}])["RouteTables"]
    ec2().create_tags(Resources=[main["RouteTableId"]],
                      Tags=[{"Key": ENV_TAG, "Value": "staging"}])
    [found] = [t for t in TABLE.owned(api, "staging") if t.id == main["RouteTableId"]]
    before = writes(aws)

    TABLE.delete(api, found)

    assert writes(aws) == before
    assert ec2().describe_route_tables(RouteTableIds=[found.id])["RouteTables"]


# -- the internet gateway ----------------------------------------------------------------

def test_internet_gateway_is_detached_then_deleted(aws, api, made):
    staging, prod = made["staging"], made["prod"]
    [gateway] = GATEWAY.owned(api, "staging")
    assert gateway.id == staging["gateway"].id
    assert gateway.vpc_ids == [staging["vpc"].id]
    assert gateway.tags == staging["gateway"].tags

    GATEWAY.delete(api, gateway)

    assert calls(aws)[-2:] == ["ec2:DetachInternetGateway", "ec2:DeleteInternetGateway"]
    assert ec2().describe_internet_gateways(Filters=[
        {"Name": "internet-gateway-id", "Values": [gateway.id]}])["InternetGateways"] == []
    assert_second_delete_writes_nothing(aws, api, GATEWAY, gateway)
    [kept] = ec2().describe_internet_gateways(
        InternetGatewayIds=[prod["gateway"].id])["InternetGateways"]
    assert [a["VpcId"] for a in kept["Attachments"]] == [prod["vpc"].id]


# -- security groups and their rules --------------------------------------------------------

def test_security_groups_owned_are_staging_both_steps_without_the_default(api, made):
    staging = made["staging"]
    [default] = ec2().describe_security_groups(Filters=[
        {"Name": "vpc-id", "Values": [staging["vpc"].id]},
        {"Name": "group-name", "Values": ["default"]}])["SecurityGroups"]
    # An environment's tag on a VPC's default group (by hand, say) does not make it one
    # teardown deletes: it goes with its VPC.
    ec2().create_tags(Resources=[default["GroupId"]], Tags=[{"Key": ENV_TAG,
                                                             "Value": "staging"}])

    owned = {g.id: g for g in GROUP.owned(api, "staging")}

    assert set(owned) == {staging["cluster"].id, staging["lambda"].id}
    assert owned[staging["lambda"].id].tags == staging["lambda"].tags
    assert owned[staging["cluster"].id].name == "staging-db"
    assert ids(CLUSTER_GROUP.owned(api, "staging")) == set(owned)


def test_two_groups_that_reference_each_other_are_both_deleted_after_revoke_references(
        aws, api, made):
    staging, prod = made["staging"], made["prod"]
    cluster, lam = staging["cluster"].id, staging["lambda"].id
    # The Lambda group lets traffic out to the cluster's, and admits it back (AWS would
    # refuse to delete either while the other's rule names it; moto does not).
    ec2().authorize_security_group_egress(GroupId=lam, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432,
         "UserIdGroupPairs": [{"GroupId": cluster}]}])
    authorize(api, "staging", lam, sgrules.Rule.tcp_from(443, cluster))
    # A rule that names its own group keeps no other group from being deleted: kept.
    authorize(api, "staging", lam, sgrules.Rule.tcp_from(9092, lam))
    assert len(references([cluster, lam])) == 3

    assert revoke_references(api, [cluster, lam]) == 3

    assert references([cluster, lam]) == []
    left = rules_of([cluster, lam])
    assert [(r["GroupId"], r["ReferencedGroupInfo"]["GroupId"]) for r in left
            if r.get("ReferencedGroupInfo")] == [(lam, lam)]
    # The default egress (a CIDR rule) is left: it goes with its group.
    assert {r["GroupId"] for r in left if r.get("CidrIpv4") == "0.0.0.0/0"} == {cluster, lam}

    groups = GROUP.owned(api, "staging")
    for group in groups:
        GROUP.delete(api, group)

    assert ec2().describe_security_groups(Filters=[
        {"Name": "group-id", "Values": [cluster, lam]}])["SecurityGroups"] == []
    for group in groups:
        assert_second_delete_writes_nothing(aws, api, GROUP, group)
    assert references([prod["cluster"].id]) != []


def test_a_group_delete_revokes_its_own_references_first(aws, api, made):
    """ClusterSecurityGroup (rds) is a SecurityGroup: its delete revokes the rule that
    names the Lambda group, then deletes the group."""
    staging = made["staging"]
    [cluster] = [g for g in CLUSTER_GROUP.owned(api, "staging")
                 if g.id == staging["cluster"].id]
    assert len(references([cluster.id])) == 1

    CLUSTER_GROUP.delete(api, cluster)

    assert calls(aws)[-2:] == ["ec2:RevokeSecurityGroupIngress", "ec2:DeleteSecurityGroup"]
    assert ec2().describe_security_groups(Filters=[
        {"Name": "group-id", "Values": [cluster.id]}])["SecurityGroups"] == []
    assert CLUSTER_GROUP.gone(api, cluster)
    assert_second_delete_writes_nothing(aws, api, CLUSTER_GROUP, cluster)


def test_rules_owned_are_the_tagged_ones_and_deleted_by_id(aws, api, made):
    staging, prod = made["staging"], made["prod"]
    egress = ec2().authorize_security_group_egress(GroupId=staging["lambda"].id, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
         "IpRanges": [{"CidrIp": "10.0.0.0/16"}]}],
        TagSpecifications=[{"ResourceType": "security-group-rule",
                            "Tags": [{"Key": ENV_TAG, "Value": "staging"}]}])
    [egress_id] = [r["SecurityGroupRuleId"] for r in egress["SecurityGroupRules"]]

    owned = {r.id: r for r in RULE.owned(api, "staging")}

    # The rules runbook tagged, not AWS's untagged default egress, not prod's.
    assert set(owned) == {staging["rule"], egress_id}
    ingress = owned[staging["rule"]]
    assert isinstance(ingress, RuleFound)
    assert ingress.group_id == staging["cluster"].id
    assert ingress.rule == sgrules.Rule.tcp_from(5432, staging["lambda"].id)
    assert ingress.tags[STEP_TAG] == "vpc-integrate"
    assert RULE.title(ingress) == (f"ec2:security-group-rule {staging['cluster'].id} "
                                   f"tcp/5432 from {staging['lambda'].id} ({ingress.id})")
    assert owned[egress_id].rule.egress

    for rule in owned.values():
        RULE.delete(api, rule)

    left = {r["SecurityGroupRuleId"] for r in rules_of([staging["cluster"].id,
                                                        staging["lambda"].id])}
    assert not left & set(owned)
    assert calls(aws)[-2:] in (["ec2:RevokeSecurityGroupIngress", "ec2:RevokeSecurityGroupEgress"],
                               ["ec2:RevokeSecurityGroupEgress", "ec2:RevokeSecurityGroupIngress"])
    for rule in owned.values():
        assert_second_delete_writes_nothing(aws, api, RULE, rule)
    assert ids(RULE.owned(api, "prod")) == {prod["rule"]}


def references(group_ids: list[str]) -> list[dict]:
    """The rules of those groups that name another group."""
    return [r for r in rules_of(group_ids)
            if (r.get("ReferencedGroupInfo") or {}).get("GroupId") not in (None, r["GroupId"])]


def rules_of(group_ids: list[str]) -> list[dict]:
    return ec2().describe_security_group_rules(Filters=[
        {"Name": "group-id", "Values": group_ids}])["SecurityGroupRules"]


# -- VPC endpoints ---------------------------------------------------------------------------

def test_endpoint_is_deleted_and_then_gone(aws, api, made):
    staging, prod = made["staging"], made["prod"]
    [endpoint] = ENDPOINT.owned(api, "staging")
    assert endpoint.id == staging["endpoint"].id
    assert endpoint.tags == staging["endpoint"].tags
    assert endpoint.service == "secretsmanager"

    ENDPOINT.delete(api, endpoint)

    assert calls(aws)[-1] == "ec2:DeleteVpcEndpoints"
    # moto, like AWS for a while, still lists it: deleted.
    [raw] = ec2().describe_vpc_endpoints(VpcEndpointIds=[endpoint.id])["VpcEndpoints"]
    assert raw["State"].lower() == "deleted"
    assert ENDPOINT.gone(api, endpoint)
    assert ENDPOINT.owned(api, "staging") == []
    assert_second_delete_writes_nothing(aws, api, ENDPOINT, endpoint)
    [kept] = ENDPOINT.owned(api, "prod")
    assert kept.id == prod["endpoint"].id and kept.state.lower() == "available"


# -- network interfaces ----------------------------------------------------------------------

def test_lambda_interfaces_finds_lambdas_interface_and_not_another(api, made):
    staging, prod = made["staging"], made["prod"]
    lam, subnet = staging["lambda"].id, staging["private"].id
    lambdas = interface("AWS Lambda VPC ENI-fn-uuid", subnet, [lam])
    other = interface("an instance's", subnet, [])
    interface("AWS Lambda VPC ENI-prod-fn-uuid", prod["private"].id, [prod["lambda"].id])

    by_group = lambda_interfaces(api, group_ids=[lam])
    by_subnet = lambda_interfaces(api, subnet_ids=[subnet])

    assert ids(by_group) == ids(by_subnet) == {lambdas}
    [found] = by_group
    assert (found.status, found.description, found.group_ids, found.subnet_id,
            found.attachment_id) == (AVAILABLE, "AWS Lambda VPC ENI-fn-uuid", [lam], subnet,
                                     None)
    # What keeps the subnet: every interface in it, whoever made it.
    assert {lambdas, other} <= ids(blocking(api, [lam], [subnet]))
    assert not ids(blocking(api, [lam], [subnet])) & ids(
        lambda_interfaces(api, group_ids=[prod["lambda"].id]))
    assert lambda_interfaces(api) == []


def test_an_available_interface_is_deleted_and_a_second_delete_is_a_no_op(aws, api, made):
    staging = made["staging"]
    eni = interface("AWS Lambda VPC ENI-fn-uuid", staging["private"].id,
                    [staging["lambda"].id])
    [found] = lambda_interfaces(api, group_ids=[staging["lambda"].id])

    INTERFACE.delete(api, found)

    assert calls(aws)[-1] == "ec2:DeleteNetworkInterface"
    assert ec2().describe_network_interfaces(Filters=[
        {"Name": "network-interface-id", "Values": [eni]}])["NetworkInterfaces"] == []
    assert INTERFACE.gone(api, found)
    assert_second_delete_writes_nothing(aws, api, INTERFACE, found)


def test_an_interface_in_use_is_refused_without_a_call(aws, api, made):
    """AWS refuses to delete an attached interface (moto deletes it): runbook does not
    ask, and says why."""
    subnet = made["staging"]["private"].id
    eni = interface("AWS Lambda VPC ENI-fn-uuid", subnet, [])
    instance = ec2().run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1,
                                   SubnetId=subnet)["Instances"][0]["InstanceId"]
    ec2().attach_network_interface(NetworkInterfaceId=eni, InstanceId=instance, DeviceIndex=1)
    [found] = lambda_interfaces(api, subnet_ids=[subnet])
    assert found.status == "in-use" and found.attachment_id
    before = writes(aws)

    with pytest.raises(StepFailed, match="in-use, not available"):
        INTERFACE.delete(api, found)

    assert writes(aws) == before
    assert not INTERFACE.gone(api, found)


def interface(description: str, subnet_id: str, group_ids: list[str]) -> str:
    return ec2().create_network_interface(Description=description, SubnetId=subnet_id,
                                          Groups=group_ids)["NetworkInterface"]["NetworkInterfaceId"]


# -- the whole network -------------------------------------------------------------------------

def test_staging_torn_down_in_order_leaves_prod_as_it_was(api, made):
    prod_before = listing("prod")

    empty_staging(api, made["staging"])
    for vpc in VPC.owned(api, "staging"):
        VPC.delete(api, vpc)

    assert listing("staging") == {kind: [] for kind in prod_before}
    assert listing("prod") == prod_before


def empty_staging(api: Api, staging: dict) -> None:
    """Everything of staging's but its VPC, in the order teardown deletes them."""
    for endpoint in ENDPOINT.owned(api, "staging"):
        ENDPOINT.delete(api, endpoint)
    for rule in RULE.owned(api, "staging"):
        RULE.delete(api, rule)
    groups = GROUP.owned(api, "staging")
    revoke_references(api, [g.id for g in groups])
    for group in groups:
        GROUP.delete(api, group)
    for table in TABLE.owned(api, "staging"):
        TABLE.delete(api, table)
    for gateway in GATEWAY.owned(api, "staging"):
        GATEWAY.delete(api, gateway)
    for subnet in SUBNET.owned(api, "staging"):
        SUBNET.delete(api, subnet)


def listing(env: str) -> dict:
    """What the account holds of `env`, by type, read with plain boto3 (endpoints that
    are deleted, which moto keeps listing, left out)."""
    client, tagged = ec2(), [{"Name": f"tag:{ENV_TAG}", "Values": [env]}]
    return {
        "vpcs": sorted(v["VpcId"] for v in client.describe_vpcs(Filters=tagged)["Vpcs"]),
        "subnets": sorted(s["SubnetId"] for s in
                          client.describe_subnets(Filters=tagged)["Subnets"]),
        "route tables": sorted((t["RouteTableId"], len(t["Associations"])) for t in
                               client.describe_route_tables(Filters=tagged)["RouteTables"]),
        "gateways": sorted((g["InternetGatewayId"], str(g["Attachments"])) for g in
                           client.describe_internet_gateways(Filters=tagged)["InternetGateways"]),
        "groups": sorted(g["GroupId"] for g in
                         client.describe_security_groups(Filters=tagged)["SecurityGroups"]),
        "rules": sorted(r["SecurityGroupRuleId"] for r in client.describe_security_group_rules(
            Filters=tagged)["SecurityGroupRules"]),
        "endpoints": sorted(e["VpcEndpointId"] for e in
                            client.describe_vpc_endpoints(Filters=tagged)["VpcEndpoints"]
                            if e["State"].lower() != "deleted"),
    }
