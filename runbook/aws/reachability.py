"""Whether Lambda functions in a VPC can reach Secrets Manager and the cluster, judged
from what Describe* calls return.

`preflight` is a pure function of a `Described`: plain data that vpc-integrate builds
from DescribeSecurityGroups, DescribeVpcEndpoints, DescribeRouteTables and the VPC's
DNS attributes (or that a test builds by hand). It returns one message per missing
piece, naming it and the way to add it, so a failed preflight says what to fix rather
than that something somewhere is wrong.

Secrets Manager is reached through an available interface endpoint with private DNS
(which needs the VPC's DNS support and hostnames) whose security group admits 443 from
the Lambda group, or else through a 0.0.0.0/0 route to a NAT gateway in every Lambda
subnet. The cluster is reached when the RDS group admits the port from the Lambda group
(or from CIDRs covering every Lambda subnet) and the Lambda group lets it out.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Sequence

from runbook.aws import naming
from runbook.aws import policies

HTTPS = 443
ANYWHERE = "0.0.0.0/0"

# Endpoint states it will not leave. DescribeVpcEndpoints lists a deleted endpoint for a
# while (AWS and moto alike); adopting it would leave the functions without a path.
FINAL_STATES = frozenset({"deleting", "deleted", "rejected", "failed", "expired"})


# -- what is described -----------------------------------------------------------------

@dataclass(frozen=True)
class Permission:
    """One IpPermissions entry of a security group, in either direction."""

    protocol: str                     # "tcp", "udp", "icmp", ... or "-1" (all traffic)
    from_port: int | None = None
    to_port: int | None = None
    groups: frozenset[str] = frozenset()
    cidrs: tuple[str, ...] = ()

    def allows_tcp(self, port: int) -> bool:
        if self.protocol == "-1":
            return True
        if self.protocol not in ("tcp", "6") or self.from_port is None or self.to_port is None:
            return False
        return self.from_port <= port <= self.to_port

    def covers(self, cidr: str) -> bool:
        return any(_covers(outer, cidr) for outer in self.cidrs)


ALL_TRAFFIC_OUT = Permission("-1", cidrs=(ANYWHERE,))  # a new group's default egress


@dataclass
class SecurityGroup:
    id: str
    name: str
    tags: dict = field(default_factory=dict)
    ingress: list[Permission] = field(default_factory=list)
    egress: list[Permission] = field(default_factory=list)

    def grants(self, port: int, group: str) -> bool:
        """An ingress rule names `group` and covers TCP `port`: the rule runbook adds is present."""
        return any(p.allows_tcp(port) and group in p.groups for p in self.ingress)

    def admits(self, port: int, *, group: str, cidrs: Sequence[str]) -> bool:
        """Ingress allows TCP `port` from `group`, or from CIDRs covering every one of `cidrs`."""
        allowing = [p for p in self.ingress if p.allows_tcp(port)]
        if any(group in p.groups for p in allowing):
            return True
        return bool(cidrs) and all(any(p.covers(c) for p in allowing) for c in cidrs)

    def sends(self, port: int, *, groups: Sequence[str] = (), cidr: str) -> bool:
        """Egress allows TCP `port` to one of `groups`, or to a CIDR covering `cidr`."""
        allowing = [p for p in self.egress if p.allows_tcp(port)]
        return any(p.groups & set(groups) or p.covers(cidr) for p in allowing)


@dataclass(frozen=True)
class Subnet:
    id: str
    cidr: str
    az: str = ""
    route_table_id: str | None = None   # its explicit association, else the VPC's main table
    nat_gateway_id: str | None = None   # target of an active 0.0.0.0/0 route in that table


@dataclass
class Endpoint:
    id: str
    service: str          # "secretsmanager" for com.amazonaws.<region>.secretsmanager
    state: str
    private_dns: bool
    subnet_ids: list[str] = field(default_factory=list)
    group_ids: list[str] = field(default_factory=list)
    type: str = "Interface"
    tags: dict = field(default_factory=dict)
    policy: dict | None = None   # its endpoint policy (AWS's default when none was set)


@dataclass
class Described:
    """What `preflight` judges: plain data built from Describe* calls (or by a test)."""

    vpc_id: str
    vpc_cidr: str
    dns_support: bool
    dns_hostnames: bool
    subnets: list[Subnet]                 # the subnets the functions run in
    lambda_group_id: str
    database_group_id: str
    database_port: int
    groups: dict[str, SecurityGroup]      # by id: at least the Lambda, RDS, endpoint groups
    endpoints: list[Endpoint]
    # The services the functions call through an interface endpoint (or a NAT gateway):
    # Secrets Manager always, EventBridge when the environment has phase a4.
    services: tuple[str, ...] = ("secretsmanager",)


# What a preflight message calls each service.
SERVICE_NAMES = {"secretsmanager": "Secrets Manager", "events": "EventBridge"}


def _covers(outer: str, inner: str) -> bool:
    try:
        a, b = ipaddress.ip_network(outer, strict=False), ipaddress.ip_network(inner, strict=False)
    except ValueError:
        return False
    return a.version == b.version and b.subnet_of(a)


# -- the preflight ---------------------------------------------------------------------

def preflight(d: Described) -> list[str]:
    """The problems on the paths Lambda -> Secrets Manager (and EventBridge, when the
    functions publish to it) and Lambda -> cluster; [] if none.

    Pure: it reads only `d`. Each problem names the missing piece and how to add it.
    """
    if not d.subnets:
        return [f"no Lambda subnet in {d.vpc_id}: the functions would have nowhere to run. "
                "Run `runbook run --phase a1` first"]
    lam = d.groups.get(d.lambda_group_id)
    if lam is None:
        return [f"the Lambda security group {d.lambda_group_id} is not in {d.vpc_id}; "
                "`runbook run --step vpc-integrate` creates it"]
    return ([problem for service in d.services for problem in _service_problems(d, lam, service)]
            + _database_problems(d, lam))


def _service_problems(d: Described, lam: SecurityGroup, service: str) -> list[str]:
    title = SERVICE_NAMES[service]
    candidates = [e for e in d.endpoints if e.service == service
                  and e.type.lower() == "interface" and e.state.lower() not in FINAL_STATES]
    if not candidates:
        no_endpoint = f"no {service} interface endpoint with private DNS in {d.vpc_id}"
    else:
        reasons = [_endpoint_problem(d, lam, e) for e in candidates]
        if not all(reasons):
            return []
        no_endpoint = "; ".join(reasons)
    hint = ("`runbook run --step vpc-integrate` converges the endpoint, or route 0.0.0.0/0 "
            "to a NAT gateway")
    if not lam.sends(HTTPS, cidr=ANYWHERE) and all(s.nat_gateway_id for s in d.subnets):
        return [f"no route to {title} from the Lambda subnets: {no_endpoint}, and the "
                f"Lambda security group {lam.id} does not allow outbound TCP 443 to 0.0.0.0/0, "
                "which the NAT gateway route needs"]
    return [f"no route to {title} from subnet {s.id}: {no_endpoint}, and no 0.0.0.0/0 "
            f"route to a NAT gateway in its route table {s.route_table_id or '(none)'}. {hint}"
            for s in d.subnets if not s.nat_gateway_id]


def _endpoint_problem(d: Described, lam: SecurityGroup, e: Endpoint) -> str:
    """Why endpoint `e` does not give the Lambda subnets its service; "" if it does."""
    name = f"{e.service} endpoint {e.id}"
    if e.state.lower() != "available":
        return f"{name} is {e.state}, not available"
    if not e.private_dns:
        return (f"{name} has private DNS disabled, so the SDK's default hostname does not "
                "resolve to it")
    off = [attr for attr, on in (("enableDnsSupport", d.dns_support),
                                 ("enableDnsHostnames", d.dns_hostnames)) if not on]
    if off:
        return f"{d.vpc_id} has {' and '.join(off)} off, which the private DNS of {name} needs"
    if not e.subnet_ids:
        return f"{name} has no subnet"
    if not any(g in d.groups and d.groups[g].admits(HTTPS, group=lam.id,
                                                    cidrs=[s.cidr for s in d.subnets])
               for g in e.group_ids):
        groups = ", ".join(e.group_ids) or "none"
        return (f"the endpoint security group of {name} ({groups}) does not allow TCP 443 from "
                f"the Lambda security group {lam.id}")
    if not lam.sends(HTTPS, groups=e.group_ids, cidr=d.vpc_cidr):
        return (f"the Lambda security group {lam.id} does not allow outbound TCP 443 to the "
                f"security group of {name} or to {d.vpc_cidr}")
    return ""


def _database_problems(d: Described, lam: SecurityGroup) -> list[str]:
    port, where = d.database_port, f"no path from Lambda to the cluster on TCP {d.database_port}"
    rds = d.groups.get(d.database_group_id)
    if rds is None:
        return [f"{where}: the RDS security group {d.database_group_id} is not in {d.vpc_id}"]
    problems = []
    if not rds.admits(port, group=lam.id, cidrs=[s.cidr for s in d.subnets]):
        problems.append(f"{where}: the RDS security group {rds.id} does not allow TCP {port} from "
                        f"the Lambda security group {lam.id} (nor from CIDRs covering its "
                        f"subnets). `runbook run --step vpc-integrate` adds the rule")
    if not lam.sends(port, groups=[rds.id], cidr=d.vpc_cidr):
        problems.append(f"{where}: the Lambda security group {lam.id} does not allow outbound "
                        f"TCP {port} to the RDS security group {rds.id}, to {d.vpc_cidr} or to "
                        f"{ANYWHERE}")
    return problems


# -- parsing Describe* answers ---------------------------------------------------------

def parse_group(raw: dict) -> SecurityGroup:
    return SecurityGroup(raw["GroupId"], raw.get("GroupName", ""), naming.from_aws(raw.get("Tags")),
                         [_permission(p) for p in raw.get("IpPermissions", ())],
                         [_permission(p) for p in raw.get("IpPermissionsEgress", ())])


def _permission(raw: dict) -> Permission:
    return Permission(str(raw.get("IpProtocol", "")), raw.get("FromPort"), raw.get("ToPort"),
                      frozenset(p["GroupId"] for p in raw.get("UserIdGroupPairs", ())
                                if p.get("GroupId")),
                      tuple(r["CidrIp"] for r in raw.get("IpRanges", ()) if r.get("CidrIp")))


def parse_endpoint(raw: dict, region: str) -> Endpoint:
    prefix = f"com.amazonaws.{region}."
    service = raw["ServiceName"]
    return Endpoint(raw["VpcEndpointId"], service.removeprefix(prefix),
                    str(raw.get("State", "")), bool(raw.get("PrivateDnsEnabled")),
                    list(raw.get("SubnetIds", ())), [g["GroupId"] for g in raw.get("Groups", ())],
                    str(raw.get("VpcEndpointType", "")), naming.from_aws(raw.get("Tags")),
                    policies.document(raw.get("PolicyDocument")))


def nat_route(table: dict | None) -> str | None:
    for route in (table or {}).get("Routes", ()):
        if (route.get("DestinationCidrBlock") == ANYWHERE
                and str(route.get("NatGatewayId", "")).startswith("nat-")
                and route.get("State", "active") == "active"):  # a deleted NAT: "blackhole"
            return route["NatGatewayId"]
    return None
