"""Step network's public part (network.public_subnets, for MSK's public access) against
in-process moto: what it makes, that the private subnets stay private, what it adopts,
and that a run cut short right after each of its writes is finished by the next run
without a second gateway or table."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ConnectionClosedError

from runbook import config as config_mod
from runbook.aws.clients import ClientFactory
from runbook.output.progress import Progress
from runbook.steps import new_runner
from tests.conftest import REGION
from tests.functional.conftest import run_steps as run

PRIVATE = ("10.0.11.0/24", "10.0.12.0/24", "10.0.13.0/24")
PUBLIC = ("10.0.101.0/24", "10.0.102.0/24")


def ec2():
    return boto3.client("ec2", region_name=REGION)


def tags(item) -> dict:
    return {t["Key"]: t["Value"] for t in item.get("Tags", ())}


def vpc_filter(vpc_id):
    return [{"Name": "vpc-id", "Values": [vpc_id]}]


def gateways():
    return ec2().describe_internet_gateways()["InternetGateways"]


def tables_named(vpc_id, name):
    return [t for t in ec2().describe_route_tables(Filters=vpc_filter(vpc_id))["RouteTables"]
            if tags(t).get("Name") == name]


def table_of(vpc_id, subnet_id) -> dict:
    """The table a subnet uses: its own association, else the VPC's main table."""
    tables = ec2().describe_route_tables(Filters=vpc_filter(vpc_id))["RouteTables"]
    own = [t for t in tables if any(a.get("SubnetId") == subnet_id
                                    for a in t.get("Associations", ()))]
    main = [t for t in tables if any(a.get("Main") for a in t.get("Associations", ()))]
    return (own or main)[0]


def routes_to_a_gateway(table) -> list[str]:
    return [r["DestinationCidrBlock"] for r in table["Routes"]
            if str(r.get("GatewayId", "")).startswith("igw-")]


def test_public_subnets_get_a_gateway_and_one_table_routing_to_it(account, config):
    results, _ = run(config, ["network"])

    network = results["network"]
    assert network.status == "ok", network.error
    out = network.outputs
    subnets = {s["SubnetId"]: s for s in ec2().describe_subnets(
        Filters=vpc_filter(out["vpc_id"]))["Subnets"]}
    # In the file's order, in the file's zones, tagged like the private ones.
    assert [(subnets[i]["CidrBlock"], subnets[i]["AvailabilityZone"])
            for i in out["public_subnet_ids"]] == [(PUBLIC[0], "eu-central-1a"),
                                                   (PUBLIC[1], "eu-central-1b")]
    for subnet_id, az in zip(out["public_subnet_ids"], ("eu-central-1a", "eu-central-1b")):
        assert tags(subnets[subnet_id])["Name"] == f"matbakh-prod-public-{az}"
        assert tags(subnets[subnet_id])["runbook:step"] == "network"
        # MSK gives the brokers their public addresses (SERVICE_PROVIDED_EIPS).
        assert subnets[subnet_id]["MapPublicIpOnLaunch"] is False
    [gateway] = gateways()
    assert gateway["InternetGatewayId"] == out["internet_gateway_id"]
    assert [a["VpcId"] for a in gateway["Attachments"]] == [out["vpc_id"]]
    assert tags(gateway) == {"project": "matbakh", "Name": "matbakh-prod-igw",
                             "runbook:env": "prod", "runbook:step": "network",
                             "runbook:created": "true"}
    [table] = tables_named(out["vpc_id"], "matbakh-prod-public")
    assert sorted(a["SubnetId"] for a in table["Associations"]) == sorted(out["public_subnet_ids"])
    assert routes_to_a_gateway(table) == ["0.0.0.0/0"]
    assert [r["GatewayId"] for r in table["Routes"]
            if r["DestinationCidrBlock"] == "0.0.0.0/0"] == [out["internet_gateway_id"]]
    assert tags(table)["runbook:env"] == "prod"


def test_private_subnets_have_no_route_to_the_gateway(account, config):
    out = run(config, ["network"])[0]["network"].outputs

    by_cidr = {s["CidrBlock"]: s["SubnetId"] for s in ec2().describe_subnets(
        Filters=vpc_filter(out["vpc_id"]))["Subnets"]}
    assert [by_cidr[c] for c in PRIVATE] == list(out["subnet_ids"])
    for subnet_id in out["subnet_ids"]:
        table = table_of(out["vpc_id"], subnet_id)
        assert routes_to_a_gateway(table) == [], (subnet_id, table["RouteTableId"])
        assert table["RouteTableId"] in out["route_table_ids"]
    # Nor does the VPC's main table, which a subnet without its own would use.
    main = [t for t in ec2().describe_route_tables(Filters=vpc_filter(out["vpc_id"]))["RouteTables"]
            if any(a.get("Main") for a in t["Associations"])]
    assert [routes_to_a_gateway(t) for t in main] == [[]]


def test_a_second_apply_with_public_subnets_makes_no_mutating_call(account, config):
    run(config, ["network"])

    again, aws = run(config, ["network"])

    assert again["network"].changes == [] and again["network"].api_calls["write"] == 0
    assert aws.journal.entries == []
    assert len(gateways()) == 1


def test_without_public_subnets_there_is_no_gateway_and_the_outputs_say_so(account, write_config):
    def without(data):  # a file without phase a5, whose MSK brokers need them
        data["network"].pop("public_subnets")
        data["phases"].pop("a5")

    config = config_mod.load(write_config(without))

    out = run(config, ["network"])[0]["network"].outputs

    assert list(out["public_subnet_ids"]) == []
    assert out["internet_gateway_id"] is None
    assert gateways() == []
    assert len(ec2().describe_subnets(Filters=vpc_filter(out["vpc_id"]))["Subnets"]) == 3


def test_what_the_old_scripts_made_public_is_adopted_and_tagged_not_made_again(account, config):
    vpc_id = ec2().create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    public = [ec2().create_subnet(VpcId=vpc_id, CidrBlock=cidr, AvailabilityZone=REGION + az)
              ["Subnet"]["SubnetId"] for cidr, az in zip(PUBLIC, "ab")]
    igw = ec2().create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2().attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc_id)
    table = ec2().create_route_table(VpcId=vpc_id)["RouteTable"]["RouteTableId"]
    ec2().create_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    ec2().associate_route_table(RouteTableId=table, SubnetId=public[0])

    results, _ = run(config, ["network"])

    network = results["network"]
    assert network.status == "ok", network.error
    assert network.outputs["internet_gateway_id"] == igw
    assert list(network.outputs["public_subnet_ids"]) == public
    assert [g["InternetGatewayId"] for g in gateways()] == [igw]
    assert tags(gateways()[0])["runbook:env"] == "prod"
    [adopted] = tables_named(vpc_id, "matbakh-prod-public")
    assert adopted["RouteTableId"] == table
    assert sorted(a["SubnetId"] for a in adopted["Associations"]) == sorted(public)
    created = [c.resource for c in network.changes if c.action == "create"]
    assert not [r for r in created if r.startswith(
        ("ec2:internet-gateway", "ec2:route-table matbakh-prod-public", "ec2:subnet matbakh-prod-public"))]
    assert run(config, ["network"])[0]["network"].api_calls["write"] == 0


def run_cut_short(config, operation: str, nth: int = 1):
    """Run step network, and stop it right after the nth `operation` took effect, as a
    lost answer or a process killed there would."""
    seen = []

    def cut(service, name, write, response):
        if name == operation:
            seen.append(name)
            if len(seen) == nth:
                raise ConnectionClosedError(endpoint_url=f"https://{service}.{REGION}")

    aws = ClientFactory(REGION, after_interceptors=[cut])
    runner = new_runner(config, aws, Progress(quiet=True), sleep=lambda s: None)
    [result] = runner.run(["network"])
    assert seen, f"{operation} was never called"
    return result


@pytest.mark.parametrize("operation, nth", [
    ("CreateSubnet", 4), ("CreateInternetGateway", 1), ("AttachInternetGateway", 1),
    ("CreateRouteTable", 4), ("CreateRoute", 1), ("AssociateRouteTable", 4),
    ("AssociateRouteTable", 5)], ids=lambda v: str(v))
def test_a_run_cut_short_after_a_public_write_is_finished_by_the_next(account, config,
                                                                       operation, nth):
    first = run_cut_short(config, operation, nth)
    assert first.status == "failed"

    results, _ = run(config, ["network"])

    network = results["network"]
    assert network.status == "ok", network.error
    out = network.outputs
    clean_vpc = out["vpc_id"]
    assert len(gateways()) == 1
    assert [a["VpcId"] for a in gateways()[0]["Attachments"]] == [clean_vpc]
    [table] = tables_named(clean_vpc, "matbakh-prod-public")
    assert sorted(a["SubnetId"] for a in table["Associations"]) == sorted(out["public_subnet_ids"])
    assert routes_to_a_gateway(table) == ["0.0.0.0/0"]
    subnets = ec2().describe_subnets(Filters=vpc_filter(clean_vpc))["Subnets"]
    assert sorted(s["CidrBlock"] for s in subnets) == sorted(PRIVATE + PUBLIC)
    assert run(config, ["network"])[0]["network"].api_calls["write"] == 0
