"""The reachability preflight of vpc-integrate, as a pure function of described state:
which paths Lambda -> Secrets Manager and Lambda -> cluster it accepts, and that each
refusal names the missing piece."""

from __future__ import annotations

import dataclasses

import pytest

from runbook.aws.reachability import (
    ALL_TRAFFIC_OUT,
    Described,
    Endpoint,
    Permission,
    SecurityGroup,
    Subnet,
    nat_route,
    parse_endpoint,
    parse_group,
    preflight,
)

VPC, CIDR = "vpc-1", "10.0.0.0/16"
LAMBDA, RDS, ENDPOINTS = "sg-lambda", "sg-rds", "sg-endpoints"
SUBNETS = [Subnet("subnet-a", "10.0.11.0/24", "eu-central-1a", "rtb-a"),
           Subnet("subnet-b", "10.0.12.0/24", "eu-central-1b", "rtb-b"),
           Subnet("subnet-c", "10.0.13.0/24", "eu-central-1c", "rtb-c")]


def tcp(port, *, groups=(), cidrs=(), to_port=None):
    return Permission("tcp", port, to_port or port, frozenset(groups), tuple(cidrs))


def good(**changes) -> Described:
    """What vpc-integrate converges: endpoint path to Secrets Manager, SG path to 5432."""
    described = Described(
        vpc_id=VPC, vpc_cidr=CIDR, dns_support=True, dns_hostnames=True,
        subnets=list(SUBNETS), lambda_group_id=LAMBDA, database_group_id=RDS, database_port=5432,
        groups={
            LAMBDA: SecurityGroup(LAMBDA, "matbakh-prod-lambda", egress=[ALL_TRAFFIC_OUT]),
            RDS: SecurityGroup(RDS, "matbakh-prod-db", ingress=[tcp(5432, groups=[LAMBDA])],
                               egress=[ALL_TRAFFIC_OUT]),
            ENDPOINTS: SecurityGroup(ENDPOINTS, "matbakh-prod-endpoints",
                                     ingress=[tcp(443, groups=[LAMBDA])], egress=[ALL_TRAFFIC_OUT]),
        },
        endpoints=[
            Endpoint("vpce-sm", "secretsmanager", "available", True,
                     [s.id for s in SUBNETS], [ENDPOINTS]),
            Endpoint("vpce-data", "rds-data", "available", True,
                     [s.id for s in SUBNETS], [ENDPOINTS]),
        ])
    return dataclasses.replace(described, **changes)


def without_secrets_manager(d: Described) -> list[Endpoint]:
    return [e for e in d.endpoints if e.service != "secretsmanager"]


def with_group(d: Described, group: SecurityGroup) -> dict:
    return {**d.groups, group.id: group}


def with_nat(subnets, *, only=None):
    return [dataclasses.replace(s, nat_gateway_id="nat-1") if only is None or s.id in only else s
            for s in subnets]


# -- Secrets Manager ------------------------------------------------------------------

def test_the_state_vpc_integrate_converges_passes():
    assert preflight(good()) == []


def test_without_the_secrets_manager_endpoint_every_subnet_is_named():
    d = good()
    problems = preflight(good(endpoints=without_secrets_manager(d)))
    assert problems == [
        f"no route to Secrets Manager from subnet {s.id}: no secretsmanager interface endpoint "
        f"with private DNS in {VPC}, and no 0.0.0.0/0 route to a NAT gateway in its route table "
        f"{s.route_table_id}. `runbook run --step vpc-integrate` converges the endpoint, or "
        "route 0.0.0.0/0 to a NAT gateway"
        for s in SUBNETS]


def test_with_phase_a4_eventbridge_is_checked_like_secrets_manager():
    events = Endpoint("vpce-ev", "events", "available", True, [s.id for s in SUBNETS],
                      [ENDPOINTS])
    assert preflight(good(services=("secretsmanager", "events"),
                          endpoints=[*good().endpoints, events])) == []
    problems = preflight(good(services=("secretsmanager", "events")))
    assert problems == [
        f"no route to EventBridge from subnet {s.id}: no events interface endpoint "
        f"with private DNS in {VPC}, and no 0.0.0.0/0 route to a NAT gateway in its route table "
        f"{s.route_table_id}. `runbook run --step vpc-integrate` converges the endpoint, or "
        "route 0.0.0.0/0 to a NAT gateway"
        for s in SUBNETS]
    # Without a4 nothing asks for EventBridge.
    assert preflight(good()) == []


def test_an_eventbridge_endpoint_its_group_does_not_admit_is_named():
    events = Endpoint("vpce-ev", "events", "available", True, [s.id for s in SUBNETS],
                      ["sg-closed"])
    d = good(services=("secretsmanager", "events"), endpoints=[*good().endpoints, events])
    d = dataclasses.replace(d, groups=with_group(d, SecurityGroup("sg-closed", "closed")))
    [first, *_] = preflight(d)
    assert first.startswith(f"no route to EventBridge from subnet {SUBNETS[0].id}: the endpoint "
                            "security group of events endpoint vpce-ev (sg-closed) does not "
                            f"allow TCP 443 from the Lambda security group {LAMBDA}")


def test_a_nat_route_in_every_subnet_stands_in_for_the_endpoint():
    d = good()
    assert preflight(good(endpoints=without_secrets_manager(d), subnets=with_nat(SUBNETS))) == []


def test_a_nat_route_in_only_some_subnets_names_the_others():
    d = good()
    problems = preflight(good(endpoints=without_secrets_manager(d),
                              subnets=with_nat(SUBNETS, only={"subnet-a", "subnet-c"})))
    assert len(problems) == 1
    assert problems[0].startswith("no route to Secrets Manager from subnet subnet-b:")
    assert "route table rtb-b" in problems[0]


def test_a_nat_route_needs_the_lambda_group_to_send_https_out():
    d = good()
    lam = SecurityGroup(LAMBDA, "l", egress=[tcp(5432, cidrs=[CIDR])])
    problems = preflight(good(endpoints=without_secrets_manager(d), subnets=with_nat(SUBNETS),
                              groups=with_group(d, lam)))
    assert len(problems) == 1
    assert f"Lambda security group {LAMBDA} does not allow outbound TCP 443 to 0.0.0.0/0" \
        in problems[0]


def test_an_endpoint_group_without_https_from_lambda_is_named():
    d = good()
    closed = SecurityGroup(ENDPOINTS, "matbakh-prod-endpoints", ingress=[tcp(80, groups=[LAMBDA])])
    problems = preflight(good(groups=with_group(d, closed)))
    assert len(problems) == 3  # no NAT route either: one per subnet
    assert (f"the endpoint security group of secretsmanager endpoint vpce-sm ({ENDPOINTS}) does "
            f"not allow TCP 443 from the Lambda security group {LAMBDA}") in problems[0]


def test_https_from_cidrs_covering_every_lambda_subnet_is_enough():
    d = good()
    by_cidr = SecurityGroup(ENDPOINTS, "e", ingress=[tcp(443, cidrs=["10.0.0.0/20"])])
    assert preflight(good(groups=with_group(d, by_cidr))) == []
    partial = SecurityGroup(ENDPOINTS, "e", ingress=[tcp(443, cidrs=["10.0.11.0/24",
                                                                     "10.0.12.0/24"])])
    assert preflight(good(groups=with_group(d, partial)))


@pytest.mark.parametrize("change, named", [
    ({"private_dns": False}, "secretsmanager endpoint vpce-sm has private DNS disabled"),
    ({"state": "pending"}, "secretsmanager endpoint vpce-sm is pending, not available"),
    ({"subnet_ids": []}, "secretsmanager endpoint vpce-sm has no subnet"),
])
def test_an_endpoint_that_cannot_serve_the_subnets_is_named(change, named):
    d = good()
    endpoints = [dataclasses.replace(e, **change) if e.service == "secretsmanager" else e
                 for e in d.endpoints]
    problems = preflight(good(endpoints=endpoints))
    assert len(problems) == 3 and all(named in p for p in problems)


def test_private_dns_needs_the_vpc_dns_attributes():
    problems = preflight(good(dns_hostnames=False))
    assert problems and f"{VPC} has enableDnsHostnames off" in problems[0]


def test_a_deleted_endpoint_does_not_count():
    d = good()
    endpoints = [dataclasses.replace(e, state="deleted") if e.service == "secretsmanager" else e
                 for e in d.endpoints]
    assert "no secretsmanager interface endpoint" in preflight(good(endpoints=endpoints))[0]


def test_one_good_endpoint_among_several_is_enough():
    d = good()
    broken = Endpoint("vpce-old", "secretsmanager", "available", False, ["subnet-a"], [])
    assert preflight(good(endpoints=[broken, *d.endpoints])) == []


# -- the database port ----------------------------------------------------------------

def test_without_the_db_port_rule_the_rds_group_and_port_are_named():
    d = good()
    problems = preflight(good(groups=with_group(d, SecurityGroup(RDS, "matbakh-prod-db"))))
    assert problems == [
        f"no path from Lambda to the cluster on TCP 5432: the RDS security group {RDS} does not "
        f"allow TCP 5432 from the Lambda security group {LAMBDA} (nor from CIDRs covering its "
        "subnets). `runbook run --step vpc-integrate` adds the rule"]


@pytest.mark.parametrize("rule", [
    tcp(5000, to_port=6000, groups=[LAMBDA]),
    Permission("-1", groups=frozenset({LAMBDA})),
    tcp(5432, cidrs=[CIDR]),
], ids=["port-range", "all-traffic", "vpc-cidr"])
def test_other_rules_that_admit_the_port_count(rule):
    d = good()
    assert preflight(good(groups=with_group(d, SecurityGroup(RDS, "db", ingress=[rule])))) == []


@pytest.mark.parametrize("rule", [
    tcp(5433, groups=[LAMBDA]),
    Permission("udp", 5432, 5432, frozenset({LAMBDA})),
    tcp(5432, groups=["sg-other"]),
    tcp(5432, cidrs=["10.0.11.0/24"]),  # one Lambda subnet of three
], ids=["other-port", "udp", "other-group", "one-subnet"])
def test_rules_that_do_not_admit_the_port_from_lambda_fail(rule):
    d = good()
    problems = preflight(good(groups=with_group(d, SecurityGroup(RDS, "db", ingress=[rule]))))
    assert len(problems) == 1 and f"RDS security group {RDS}" in problems[0]


def test_the_port_comes_from_the_cluster():
    assert "TCP 6543" in preflight(good(database_port=6543))[0]


def test_lambda_egress_must_let_the_db_port_out():
    d = good()
    https_only = SecurityGroup(LAMBDA, "l", egress=[tcp(443, cidrs=["0.0.0.0/0"])])
    problems = preflight(good(groups=with_group(d, https_only)))
    assert problems == [
        f"no path from Lambda to the cluster on TCP 5432: the Lambda security group {LAMBDA} "
        f"does not allow outbound TCP 5432 to the RDS security group {RDS}, to {CIDR} or to "
        "0.0.0.0/0"]
    narrow = SecurityGroup(LAMBDA, "l", egress=[tcp(443, cidrs=[CIDR]), tcp(5432, groups=[RDS])])
    assert preflight(good(groups=with_group(d, narrow))) == []


def test_missing_groups_and_subnets_are_named_not_crashed_on():
    assert "Lambda security group sg-gone is not in vpc-1" in \
        preflight(good(lambda_group_id="sg-gone"))[0]
    assert "RDS security group sg-gone is not in vpc-1" in \
        preflight(good(database_group_id="sg-gone"))[0]
    assert "no Lambda subnet in vpc-1" in preflight(good(subnets=[]))[0]


# -- parsing what AWS describes -------------------------------------------------------

def test_a_described_group_is_read_in_both_directions():
    group = parse_group({
        "GroupId": RDS, "GroupName": "db", "Tags": [{"Key": "runbook:env", "Value": "prod"}],
        "IpPermissions": [{"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432,
                           "UserIdGroupPairs": [{"GroupId": LAMBDA, "UserId": "1"}],
                           "IpRanges": [{"CidrIp": "10.9.0.0/16"}]}],
        "IpPermissionsEgress": [{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]})
    assert group.tags == {"runbook:env": "prod"}
    assert group.ingress == [tcp(5432, groups=[LAMBDA], cidrs=["10.9.0.0/16"])]
    assert group.egress == [ALL_TRAFFIC_OUT]


def test_a_described_endpoint_gets_its_short_service_name():
    endpoint = parse_endpoint({
        "VpcEndpointId": "vpce-1", "ServiceName": "com.amazonaws.eu-central-1.secretsmanager",
        "VpcEndpointType": "Interface", "State": "available", "PrivateDnsEnabled": True,
        "SubnetIds": ["subnet-a"], "Groups": [{"GroupId": ENDPOINTS, "GroupName": "e"}]},
        "eu-central-1")
    assert (endpoint.service, endpoint.group_ids, endpoint.private_dns) == \
        ("secretsmanager", [ENDPOINTS], True)
    other_region = parse_endpoint({"VpcEndpointId": "vpce-2", "State": "available",
                                   "ServiceName": "com.amazonaws.us-east-1.secretsmanager"},
                                  "eu-central-1")
    assert other_region.service != "secretsmanager"


def test_only_an_active_default_route_to_a_nat_gateway_counts():
    def table(*routes):
        return {"Routes": [{"DestinationCidrBlock": CIDR, "GatewayId": "local"}, *routes]}

    assert nat_route(table({"DestinationCidrBlock": "0.0.0.0/0", "NatGatewayId": "nat-1",
                            "State": "active"})) == "nat-1"
    assert nat_route(table({"DestinationCidrBlock": "0.0.0.0/0", "NatGatewayId": "nat-1",
                            "State": "blackhole"})) is None
    assert nat_route(table({"DestinationCidrBlock": "0.0.0.0/0", "GatewayId": "igw-1"})) is None
    assert nat_route(table({"DestinationCidrBlock": "10.1.0.0/16",
                            "NatGatewayId": "nat-1"})) is None
    assert nat_route(None) is None
