"""The VPC, its subnets and their route tables (step `network`), and what the preflight
of step `vpc-integrate` reads of them.

moto, unlike AWS, would happily create a second VPC with the same block; runbook never
relies on the API to refuse a duplicate: the VPC is found by id, by tags or by block.

Teardown deletes each of them in one call, once what it holds is gone (runbook.teardown
orders the kinds): a route table's subnet associations are its own, and go first. Each
delete reads the resource by id before it writes, so that one already gone makes no
mutating call, and calls AWS without the propagation retry: that retries the
"NotFound" a delete takes as done, and what teardown deletes was described already.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runbook.aws import naming, reachability
from runbook.aws.api import Api, or_none, pages
from runbook.engine.plan import diff_field
from runbook.errors import PlanError
from runbook.resources.base import DeleteOptions, Found, Resource, Spec


def zones(api: Api) -> set[str]:
    """The availability zones of the region, as this account sees them."""
    answer = api.client("ec2").describe_availability_zones(
        Filters=[{"Name": "region-name", "Values": [api.region]}])
    return {z["ZoneName"] for z in answer["AvailabilityZones"]}


def vpc_attribute(api: Api, vpc_id: str, name: str) -> bool:
    """enableDnsSupport or enableDnsHostnames of a VPC."""
    key = name[0].upper() + name[1:]
    answer = api.client("ec2").describe_vpc_attribute(VpcId=vpc_id, Attribute=name)
    return bool(answer[key]["Value"])


# -- the VPC -----------------------------------------------------------------------------

@dataclass(frozen=True)
class VpcSpec(Spec):
    cidr: str = ""


@dataclass
class VpcFound(Found):
    cidr: str = ""
    dns_support: bool = False
    dns_hostnames: bool = False


class Vpc(Resource[VpcSpec, VpcFound]):
    kind, service, plural = "ec2:vpc", "ec2", "VPCs"
    tags_in_update = True

    def find(self, api: Api, spec: VpcSpec) -> VpcFound | None:
        """By network.vpc_id, by runbook's tags, or by its block (`choose`): a VPC made
        before runbook (by the old shell scripts) is adopted and tagged rather than
        duplicated. Then its DNS attributes, which only the chosen one needs."""
        found = self.choose(spec, **self.candidates(api, spec))
        if found is None:
            return None
        found.dns_support = vpc_attribute(api, found.id, "enableDnsSupport")
        found.dns_hostnames = vpc_attribute(api, found.id, "enableDnsHostnames")
        self.claim(spec, found, f"ec2:vpc {found.id}")
        return found

    def by_id(self, api: Api, spec: VpcSpec) -> VpcFound:
        vpcs = or_none(lambda: api.client("ec2").describe_vpcs(VpcIds=[spec.id])["Vpcs"])
        if not vpcs:
            raise PlanError(spec.step, f"network.vpc_id {spec.id}",
                            "no such VPC in this account and region. Fix "
                            "network.vpc_id or remove it to create one.")
        return _vpc(vpcs[0])

    def by_tags(self, api: Api, spec: VpcSpec) -> list[VpcFound]:
        return [_vpc(v) for v in pages(api.client("ec2"), "describe_vpcs", "Vpcs",
                                       Filters=naming.owner_filters(spec.env, spec.step))]

    def by_name(self, api: Api, spec: VpcSpec) -> list[VpcFound]:
        """By block: a VPC made before runbook, not another environment's (two
        environments may well use the same block in their own VPCs), never the default."""
        return [_vpc(v) for v in pages(api.client("ec2"), "describe_vpcs", "Vpcs",
                                       Filters=[{"Name": "cidr", "Values": [spec.cidr]}])
                if not v.get("IsDefault")
                and naming.from_aws(v.get("Tags")).get(naming.ENV_TAG) in (None, spec.env)]

    def several(self, spec: VpcSpec, candidates: list[VpcFound], how: str) -> PlanError:
        ids = ", ".join(v.id for v in candidates)
        if how == "tags":
            return PlanError(spec.step, "vpc", f"several VPCs carry this environment's tags "
                             f"({ids}). Set network.vpc_id to the one to use.")
        return PlanError(spec.step, "vpc", f"several VPCs use {spec.cidr} ({ids}). Set "
                         "network.vpc_id to the one to adopt.")

    def accept(self, spec: VpcSpec, found: VpcFound, how: str) -> None:
        """A VPC's block cannot change: the file's must be the found one's."""
        if found.cidr == spec.cidr:
            return
        if how == "id":
            raise PlanError(spec.step, f"network.vpc_id {spec.id}",
                            f"its CIDR is {found.cidr}, the file says {spec.cidr}. Fix "
                            "network.cidr or network.vpc_id.")
        raise PlanError(spec.step, f"vpc {found.id}",
                        f"this environment's VPC uses {found.cidr}, the file says "
                        f"{spec.cidr}. A VPC's block cannot change: fix network.cidr.")

    def summary(self, spec: VpcSpec) -> dict:
        return {"cidr": spec.cidr, "dns_support": True, "dns_hostnames": True}

    def diff(self, spec: VpcSpec, found: VpcFound) -> dict:
        diff: dict = {}
        diff_field(diff, "dns_support", found.dns_support, True)
        diff_field(diff, "dns_hostnames", found.dns_hostnames, True)
        return diff

    def create(self, api: Api, spec: VpcSpec) -> VpcFound:
        vpc = api.client("ec2").create_vpc(
            CidrBlock=spec.cidr, TagSpecifications=naming.tag_specifications("vpc", spec.tags))["Vpc"]
        # AWS turns DNS support on for a new VPC, and hostnames off.
        found = VpcFound(vpc["VpcId"], dict(spec.tags), vpc["CidrBlock"], True, False)
        return self._set_dns(api, found, support=False, hostnames=True)

    def update(self, api: Api, spec: VpcSpec, found: VpcFound, diff: dict,
               tags: dict) -> VpcFound:
        if tags:
            self.tag(api, found, tags)
        return self._set_dns(api, found, support="dns_support" in diff,
                             hostnames="dns_hostnames" in diff)

    @staticmethod
    def _set_dns(api: Api, found: VpcFound, *, support: bool, hostnames: bool) -> VpcFound:
        ec2 = api.client("ec2")
        # One attribute per call: the API refuses both in one request.
        if support:
            api.retry_ec2(lambda: ec2.modify_vpc_attribute(
                VpcId=found.id, EnableDnsSupport={"Value": True}))
            found.dns_support = True
        if hostnames:
            api.retry_ec2(lambda: ec2.modify_vpc_attribute(
                VpcId=found.id, EnableDnsHostnames={"Value": True}))
            found.dns_hostnames = True
        return found

    # -- teardown --------------------------------------------------------------------

    def owned(self, api: Api, env: str) -> list[VpcFound]:
        """The environment's VPCs (their DNS attributes not read: teardown needs none)."""
        return [_vpc(v) for v in pages(api.client("ec2"), "describe_vpcs", "Vpcs",
                                       Filters=naming.env_filter(env))]

    def delete(self, api: Api, found: VpcFound, options: DeleteOptions = DeleteOptions()) -> None:
        """DeleteVpc, which takes the VPC's main route table, default group and network
        ACL with it; AWS refuses it (DependencyViolation) while anything else is left."""
        ec2 = api.client("ec2")
        if or_none(lambda: ec2.describe_vpcs(VpcIds=[found.id])["Vpcs"]):
            or_none(lambda: ec2.delete_vpc(VpcId=found.id))


def _vpc(raw: dict) -> VpcFound:
    """A described VPC, its DNS attributes not read yet (Vpc.find reads them)."""
    return VpcFound(raw["VpcId"], naming.from_aws(raw.get("Tags")), raw["CidrBlock"])


# -- subnets -------------------------------------------------------------------------------

@dataclass(frozen=True)
class SubnetSpec(Spec):
    vpc_id: str = ""
    cidr: str = ""
    az: str = ""


@dataclass
class SubnetFound(Found):
    cidr: str = ""
    az: str = ""
    map_public_ip: bool = False


class Subnet(Resource[SubnetSpec, SubnetFound]):
    """A subnet, private or public: no public IPs on launch. Found by its block in the
    VPC. A public subnet (network.public_subnets) differs only by its route table
    (runbook.resources.internet_gateway); MSK gives its brokers their public addresses
    itself (SERVICE_PROVIDED_EIPS), so MapPublicIpOnLaunch stays off there too."""

    kind, service, plural = "ec2:subnet", "ec2", "subnets"
    tags_in_update = True

    @staticmethod
    def in_vpc(api: Api, vpc_id: str) -> dict[str, SubnetFound]:
        """Every subnet of the VPC, by block (one read for all of them)."""
        return {s["CidrBlock"]: _subnet(s)
                for s in pages(api.client("ec2"), "describe_subnets", "Subnets",
                               Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])}

    def summary(self, spec: SubnetSpec) -> dict:
        return {"cidr": spec.cidr, "az": spec.az}

    def check(self, spec: SubnetSpec, found: SubnetFound) -> None:
        if found.az != spec.az:
            raise PlanError(spec.step, spec.field.rsplit(".", 1)[0],
                            f"subnet {found.id} ({found.cidr}) is in {found.az}, the file "
                            f"says {spec.az}; a subnet cannot move. Fix the file.")

    def diff(self, spec: SubnetSpec, found: SubnetFound) -> dict:
        diff: dict = {}
        diff_field(diff, "map_public_ip_on_launch", found.map_public_ip, False)
        return diff

    def create(self, api: Api, spec: SubnetSpec) -> SubnetFound:
        ec2 = api.client("ec2")
        subnet = api.retry_ec2(lambda: ec2.create_subnet(
            VpcId=spec.vpc_id, CidrBlock=spec.cidr, AvailabilityZone=spec.az,
            TagSpecifications=naming.tag_specifications("subnet", spec.tags)))["Subnet"]
        return SubnetFound(subnet["SubnetId"], dict(spec.tags), spec.cidr, spec.az, False)

    def update(self, api: Api, spec: SubnetSpec, found: SubnetFound, diff: dict,
               tags: dict) -> SubnetFound:
        if tags:
            self.tag(api, found, tags)
        if "map_public_ip_on_launch" in diff:
            api.client("ec2").modify_subnet_attribute(
                SubnetId=found.id, MapPublicIpOnLaunch={"Value": False})
            found.map_public_ip = False
        return found

    # -- teardown --------------------------------------------------------------------

    def owned(self, api: Api, env: str) -> list[SubnetFound]:
        """The environment's subnets, private and public."""
        return [_subnet(s) for s in pages(api.client("ec2"), "describe_subnets", "Subnets",
                                          Filters=naming.env_filter(env))]

    def delete(self, api: Api, found: SubnetFound,
               options: DeleteOptions = DeleteOptions()) -> None:
        """DeleteSubnet. AWS refuses it while a network interface is in the subnet (a
        Lambda function's, for up to 45 minutes after the function is gone:
        runbook.resources.network_interface); moto does not."""
        ec2 = api.client("ec2")
        if or_none(lambda: ec2.describe_subnets(SubnetIds=[found.id])["Subnets"]):
            or_none(lambda: ec2.delete_subnet(SubnetId=found.id))


def _subnet(raw: dict) -> SubnetFound:
    return SubnetFound(raw["SubnetId"], naming.from_aws(raw.get("Tags")), raw["CidrBlock"],
                       raw["AvailabilityZone"], bool(raw.get("MapPublicIpOnLaunch")))


# -- route tables --------------------------------------------------------------------------

@dataclass(frozen=True)
class RouteTableSpec(Spec):
    vpc_id: str = ""
    subnet_id: str = ""                  # the subnet it is associated with


@dataclass
class RouteTableFound(Found):
    subnet_ids: list = field(default_factory=list)
    internet_route: str | None = None    # gateway of a 0.0.0.0/0 route to an internet gateway
    default_route: str | None = None     # target of its 0.0.0.0/0 route, whatever it is


class RouteTable(Resource[RouteTableSpec, RouteTableFound]):
    """A subnet's own route table with only the VPC-local route: private means no route to
    an internet gateway, and an adopted subnet that has one is refused."""

    kind, service, plural = "ec2:route-table", "ec2", "route tables"

    @staticmethod
    def in_vpc(api: Api, vpc_id: str) -> list[RouteTableFound]:
        return [_route_table(rt) for rt in pages(
            api.client("ec2"), "describe_route_tables", "RouteTables",
            Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])]

    def create(self, api: Api, spec: RouteTableSpec) -> RouteTableFound:
        ec2 = api.client("ec2")
        table = api.retry_ec2(lambda: ec2.create_route_table(
            VpcId=spec.vpc_id,
            TagSpecifications=naming.tag_specifications("route-table", spec.tags)))["RouteTable"]
        found = RouteTableFound(table["RouteTableId"], dict(spec.tags), [], None)
        return self.associate(api, found, spec.subnet_id)

    def update(self, api: Api, spec: RouteTableSpec, found: RouteTableFound, diff: dict,
               tags: dict) -> RouteTableFound:
        """The one update runbook makes: associate the subnet (diff "subnet")."""
        return self.associate(api, found, spec.subnet_id)

    @staticmethod
    def associate(api: Api, found: RouteTableFound, subnet_id: str) -> RouteTableFound:
        api.retry_ec2(lambda: api.client("ec2").associate_route_table(
            RouteTableId=found.id, SubnetId=subnet_id))
        found.subnet_ids.append(subnet_id)
        return found

    # -- teardown --------------------------------------------------------------------

    def owned(self, api: Api, env: str) -> list[RouteTableFound]:
        """The environment's route tables: the private subnets' and the public one
        (internet_gateway.PublicRouteTable, the same AWS type, is listed here only)."""
        return [_route_table(rt) for rt in pages(
            api.client("ec2"), "describe_route_tables", "RouteTables",
            Filters=naming.env_filter(env))]

    def delete(self, api: Api, found: RouteTableFound,
               options: DeleteOptions = DeleteOptions()) -> None:
        """Disassociate the table from its subnets, then DeleteRouteTable (its routes go
        with it). The associations are read again here: AWS refuses to delete a table
        that has any, and one may have been made since `owned` read it. The VPC's main
        table is never runbook's, and AWS deletes it only with its VPC: left alone."""
        ec2 = api.client("ec2")
        tables = or_none(lambda: ec2.describe_route_tables(
            RouteTableIds=[found.id])["RouteTables"])
        if not tables:
            return
        associations = [a for a in tables[0].get("Associations", ())
                        if a.get("AssociationState", {}).get("State", "associated")
                        in ("associated", "associating")]
        if any(a.get("Main") for a in associations):
            return
        for association in associations:
            or_none(lambda a=association: ec2.disassociate_route_table(
                AssociationId=a["RouteTableAssociationId"]))
        or_none(lambda: ec2.delete_route_table(RouteTableId=found.id))


def _route_table(raw: dict) -> RouteTableFound:
    """A described route table: its subnets, and where its 0.0.0.0/0 route leads."""
    routes = raw.get("Routes", ())
    internet = next((r.get("GatewayId") for r in routes
                     if r.get("DestinationCidrBlock") == "0.0.0.0/0"
                     and str(r.get("GatewayId", "")).startswith("igw-")), None)
    default = next((_target(r) for r in routes
                    if r.get("DestinationCidrBlock") == "0.0.0.0/0"), None)
    return RouteTableFound(
        raw["RouteTableId"], naming.from_aws(raw.get("Tags")),
        [a["SubnetId"] for a in raw.get("Associations", ()) if a.get("SubnetId")],
        internet, default)


def _target(route: dict) -> str:
    """Where a route leads: its gateway, NAT gateway, interface, peering or instance."""
    return next((route[k] for k in ("GatewayId", "NatGatewayId", "NetworkInterfaceId",
                                    "VpcPeeringConnectionId", "TransitGatewayId",
                                    "InstanceId") if route.get(k)), "?")


# -- what the preflight reads (step vpc-integrate) -----------------------------------------

def has_ipv6(api: Api, vpc_id: str) -> bool:
    """Whether the VPC has an IPv6 block (associated, or on its way): a new group then
    gets all traffic to ::/0 too (runbook.aws.sgrules)."""
    [vpc] = api.client("ec2").describe_vpcs(VpcIds=[vpc_id])["Vpcs"]
    return any((block.get("Ipv6CidrBlockState") or {}).get("State") in ("associating", "associated")
               for block in vpc.get("Ipv6CidrBlockAssociationSet") or ())


def routed_subnets(api: Api, vpc_id: str) -> dict[str, reachability.Subnet]:
    """Every subnet of the VPC with the route table it uses (its own, else the VPC's main
    table) and that table's NAT gateway route, by id: what the preflight judges."""
    ec2, vpc_filter = api.client("ec2"), [{"Name": "vpc-id", "Values": [vpc_id]}]
    tables = pages(ec2, "describe_route_tables", "RouteTables", Filters=vpc_filter)
    main = next((t for t in tables if any(a.get("Main") for a in t.get("Associations", ()))),
                None)
    explicit = {a["SubnetId"]: t for t in tables for a in t.get("Associations", ())
                if a.get("SubnetId")
                and a.get("AssociationState", {}).get("State", "associated") == "associated"}
    subnets = {}
    for raw in pages(ec2, "describe_subnets", "Subnets", Filters=vpc_filter):
        table = explicit.get(raw["SubnetId"], main)
        subnets[raw["SubnetId"]] = reachability.Subnet(
            raw["SubnetId"], raw["CidrBlock"], raw.get("AvailabilityZone", ""),
            table["RouteTableId"] if table else None, reachability.nat_route(table))
    return subnets
