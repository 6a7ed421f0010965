"""Step network's plan cases: {"zones": [...] or null (not read: every subnet of the file
exists), "vpc": VpcFound or null,
"subnets": [SubnetFound...], "route_tables": [RouteTableFound...],
"internet_gateway": InternetGatewayFound or null (what read found for
network.public_subnets)}."""

from __future__ import annotations

from runbook.resources.internet_gateway import InternetGatewayFound
from runbook.resources.vpc import RouteTableFound, SubnetFound, VpcFound
from tests.plans.harness import build


def state(step, data: dict):
    subnets = [build(SubnetFound, s) for s in data.get("subnets", [])]
    zones = data["zones"]
    return step.state(set(zones) if zones is not None else None, build(VpcFound, data.get("vpc")),
                      {s.cidr: s for s in subnets},
                      [build(RouteTableFound, t) for t in data.get("route_tables", [])],
                      build(InternetGatewayFound, data.get("internet_gateway")))
