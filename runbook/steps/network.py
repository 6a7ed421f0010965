"""Step `network`: the VPC, its private subnets and their route tables.

The VPC is found, in order, by `network.vpc_id`, by runbook's tags, or by its CIDR
block, so that a VPC made by the old shell scripts is adopted (and tagged) rather than
duplicated. moto, unlike AWS, would happily create a second VPC with the same block;
runbook never relies on the API to refuse a duplicate.

Each subnet gets its own route table with only the VPC-local route: private means no
route to an internet gateway, and an adopted subnet that has one is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runbook.aws import naming
from runbook.engine.runner import UNKNOWN, Change, Step, diff_field, tag_change
from runbook.errors import PlanError

STEP_NAME = "network"


@dataclass
class Vpc:
    id: str
    cidr: str
    tags: dict
    dns_support: bool
    dns_hostnames: bool


@dataclass
class Subnet:
    id: str
    cidr: str
    az: str
    tags: dict
    map_public_ip: bool


@dataclass
class RouteTable:
    id: str
    tags: dict
    subnet_ids: list[str]
    internet_route: str | None  # gateway id of a 0.0.0.0/0 route to an internet gateway


@dataclass
class NetworkState:
    zones: set[str]
    vpc: Vpc | None = None
    subnets: dict[str, Subnet] = field(default_factory=dict)          # by CIDR
    route_tables: list[RouteTable] = field(default_factory=list)


class NetworkStep(Step):
    name = STEP_NAME

    # -- read ----------------------------------------------------------------------

    def read(self) -> NetworkState:
        ec2 = self.client("ec2")
        zones = ec2.describe_availability_zones(
            Filters=[{"Name": "region-name", "Values": [self.ctx.aws.region]}])
        state = NetworkState(zones={z["ZoneName"] for z in zones["AvailabilityZones"]})
        raw = self._find_vpc(ec2)
        if raw is None:
            return state
        vpc_id = raw["VpcId"]
        state.vpc = Vpc(
            id=vpc_id,
            cidr=raw["CidrBlock"],
            tags=naming.from_aws(raw.get("Tags")),
            dns_support=self._attribute(ec2, vpc_id, "enableDnsSupport"),
            dns_hostnames=self._attribute(ec2, vpc_id, "enableDnsHostnames"),
        )
        self.claim(f"ec2:vpc {vpc_id}", state.vpc.tags,
                   "network.vpc_id" if self.config.network.vpc_id else "network.cidr")
        vpc_filter = [{"Name": "vpc-id", "Values": [vpc_id]}]
        for page in ec2.get_paginator("describe_subnets").paginate(Filters=vpc_filter):
            for s in page["Subnets"]:
                state.subnets[s["CidrBlock"]] = Subnet(
                    s["SubnetId"], s["CidrBlock"], s["AvailabilityZone"],
                    naming.from_aws(s.get("Tags")), bool(s.get("MapPublicIpOnLaunch")))
        for page in ec2.get_paginator("describe_route_tables").paginate(Filters=vpc_filter):
            for rt in page["RouteTables"]:
                internet = next((r.get("GatewayId") for r in rt.get("Routes", ())
                                 if r.get("DestinationCidrBlock") == "0.0.0.0/0"
                                 and str(r.get("GatewayId", "")).startswith("igw-")), None)
                state.route_tables.append(RouteTable(
                    rt["RouteTableId"], naming.from_aws(rt.get("Tags")),
                    [a["SubnetId"] for a in rt.get("Associations", ()) if a.get("SubnetId")],
                    internet))
        self._claim_subnets(state)
        return state

    def _claim_subnets(self, state: NetworkState) -> None:
        """Refuse the file's subnets, and their route tables, when another environment
        owns them (a VPC shared by two environments that both listed one block)."""
        for index, wanted in enumerate(self.config.network.subnets):
            subnet = state.subnets.get(wanted.cidr)
            if subnet is None:
                continue
            field = f"network.subnets[{index}].cidr"
            self.claim(f"ec2:subnet {subnet.id} ({subnet.cidr})", subnet.tags, field)
            for table in state.route_tables:
                if subnet.id in table.subnet_ids:
                    self.claim(f"ec2:route-table {table.id}", table.tags, field)

    def _find_vpc(self, ec2) -> dict | None:
        net = self.config.network
        if net.vpc_id:
            try:
                vpcs = ec2.describe_vpcs(VpcIds=[net.vpc_id])["Vpcs"]
            except Exception as exc:  # noqa: BLE001 - only NotFound is an input error
                if "NotFound" in str(exc):
                    raise PlanError(STEP_NAME, f"network.vpc_id {net.vpc_id}",
                                    "no such VPC in this account and region. Fix "
                                    "network.vpc_id or remove it to create one.") from None
                raise
            vpc = vpcs[0]
            if vpc["CidrBlock"] != net.cidr:
                raise PlanError(STEP_NAME, f"network.vpc_id {net.vpc_id}",
                                f"its CIDR is {vpc['CidrBlock']}, the file says {net.cidr}. "
                                "Fix network.cidr or network.vpc_id.")
            return vpc
        tagged = self._vpcs(ec2, [{"Name": f"tag:{naming.ENV_TAG}", "Values": [self.config.env]},
                                  {"Name": f"tag:{naming.STEP_TAG}", "Values": [STEP_NAME]}])
        if len(tagged) > 1:
            raise PlanError(STEP_NAME, "vpc", "several VPCs carry this environment's tags ("
                            + ", ".join(v["VpcId"] for v in tagged)
                            + "). Set network.vpc_id to the one to use.")
        if tagged:
            if tagged[0]["CidrBlock"] != net.cidr:
                raise PlanError(STEP_NAME, f"vpc {tagged[0]['VpcId']}",
                                f"this environment's VPC uses {tagged[0]['CidrBlock']}, the file "
                                f"says {net.cidr}. A VPC's block cannot change: fix network.cidr.")
            return tagged[0]
        # Adopt by CIDR: a VPC made before runbook, not claimed by another environment.
        same_block = [v for v in self._vpcs(ec2, [{"Name": "cidr", "Values": [net.cidr]}])
                      if not v.get("IsDefault")
                      and naming.from_aws(v.get("Tags")).get(naming.ENV_TAG) in (None, self.config.env)]
        if len(same_block) > 1:
            raise PlanError(STEP_NAME, "vpc", f"several VPCs use {net.cidr} ("
                            + ", ".join(v["VpcId"] for v in same_block)
                            + "). Set network.vpc_id to the one to adopt.")
        return same_block[0] if same_block else None

    @staticmethod
    def _vpcs(ec2, filters) -> list[dict]:
        return [v for page in ec2.get_paginator("describe_vpcs").paginate(Filters=filters)
                for v in page["Vpcs"]]

    @staticmethod
    def _attribute(ec2, vpc_id: str, name: str) -> bool:
        key = name[0].upper() + name[1:]
        return bool(ec2.describe_vpc_attribute(VpcId=vpc_id, Attribute=name)[key]["Value"])

    # -- plan ----------------------------------------------------------------------

    def plan(self, state: NetworkState) -> list[Change]:
        net, config = self.config.network, self.config
        changes: list[Change] = []
        vpc_tags = naming.tags(config, STEP_NAME, naming.vpc_name(config))
        vpc_label = f"ec2:vpc {naming.vpc_name(config)}"
        if state.vpc is None:
            changes.append(Change("create", vpc_label, "create_vpc", {"tags": vpc_tags},
                                  {"cidr": net.cidr, "dns_support": True, "dns_hostnames": True}))
        else:
            diff: dict = {}
            add_tags = naming.missing_tags(vpc_tags, state.vpc.tags)
            if add_tags:
                diff["tags"] = naming.tag_diff(state.vpc.tags, add_tags)
            diff_field(diff, "dns_support", state.vpc.dns_support, True)
            diff_field(diff, "dns_hostnames", state.vpc.dns_hostnames, True)
            if diff:
                changes.append(Change("update", f"{vpc_label} ({state.vpc.id})", "update_vpc",
                                      {"tags": add_tags, "dns_support": "dns_support" in diff,
                                       "dns_hostnames": "dns_hostnames" in diff}, diff))

        tables_planned: set[str] = set()  # a table shared by several subnets is planned once
        for index, wanted in enumerate(net.subnets):
            if wanted.az not in state.zones:
                raise PlanError(STEP_NAME, f"network.subnets[{index}].az",
                                f"{wanted.az} is not an availability zone of this account in "
                                f"{self.ctx.aws.region} (it has {', '.join(sorted(state.zones))})")
            changes += self._plan_subnet(state, index, wanted, tables_planned)
        return changes

    def _plan_subnet(self, state: NetworkState, index: int, wanted,
                     tables_planned: set[str]) -> list[Change]:
        config = self.config
        name = naming.subnet_name(config, wanted.az)
        label = f"ec2:subnet {name}"
        subnet_tags = naming.tags(config, STEP_NAME, name)
        rt_name = naming.route_table_name(config, wanted.az)
        rt_tags = naming.tags(config, STEP_NAME, rt_name)
        rt_label = f"ec2:route-table {rt_name}"
        current = state.subnets.get(wanted.cidr)
        if wanted.id and (current is None or current.id != wanted.id):
            raise PlanError(STEP_NAME, f"network.subnets[{index}].id",
                            f"{wanted.id} is not a subnet with CIDR {wanted.cidr} in the VPC")
        if current is None:
            return [
                Change("create", label, "create_subnet",
                       {"cidr": wanted.cidr, "az": wanted.az, "tags": subnet_tags},
                       {"cidr": wanted.cidr, "az": wanted.az}),
                Change("create", rt_label, "create_route_table",
                       {"cidr": wanted.cidr, "tags": rt_tags}, {"subnet": wanted.cidr}),
            ]
        if current.az != wanted.az:
            raise PlanError(STEP_NAME, f"network.subnets[{index}]",
                            f"subnet {current.id} ({current.cidr}) is in {current.az}, the file "
                            f"says {wanted.az}; a subnet cannot move. Fix the file.")
        changes = []
        diff: dict = {}
        add_tags = naming.missing_tags(subnet_tags, current.tags)
        if add_tags:
            diff["tags"] = naming.tag_diff(current.tags, add_tags)
        diff_field(diff, "map_public_ip_on_launch", current.map_public_ip, False)
        if diff:
            changes.append(Change("update", f"{label} ({current.id})", "update_subnet",
                                  {"subnet_id": current.id, "tags": add_tags,
                                   "private": "map_public_ip_on_launch" in diff}, diff))

        associated = next((rt for rt in state.route_tables if current.id in rt.subnet_ids), None)
        if associated is not None:
            if associated.internet_route:
                raise PlanError(STEP_NAME, f"network.subnets[{index}]",
                                f"subnet {current.id} routes 0.0.0.0/0 to "
                                f"{associated.internet_route} through {associated.id}, so it "
                                "is public. runbook provisions private subnets: use other "
                                "CIDRs or remove that route.")
            if associated.id in tables_planned:
                return changes
            tables_planned.add(associated.id)
            return changes + tag_change(f"{rt_label} ({associated.id})", associated.id,
                                        rt_tags, associated.tags, "tag")
        ours = next((rt for rt in state.route_tables
                     if rt.tags.get("Name") == rt_name
                     and rt.tags.get(naming.ENV_TAG) == config.env), None)
        if ours is not None:
            changes.append(Change("update", f"{rt_label} ({ours.id})", "associate",
                                  {"route_table_id": ours.id, "cidr": wanted.cidr},
                                  {"subnet": {"from": None, "to": current.id}}))
        else:
            changes.append(Change("create", rt_label, "create_route_table",
                                  {"cidr": wanted.cidr, "tags": rt_tags}, {"subnet": current.id}))
        return changes

    # -- apply ---------------------------------------------------------------------

    def apply_create_vpc(self, state: NetworkState, tags: dict) -> None:
        ec2 = self.client("ec2")
        vpc = ec2.create_vpc(CidrBlock=self.config.network.cidr, TagSpecifications=[
            {"ResourceType": "vpc", "Tags": naming.as_aws(tags)}])["Vpc"]
        state.vpc = Vpc(vpc["VpcId"], vpc["CidrBlock"], tags, True, False)
        self._set_dns(state.vpc, support=False, hostnames=True)

    def apply_update_vpc(self, state: NetworkState, tags: dict, dns_support: bool,
                         dns_hostnames: bool) -> None:
        if tags:
            self.apply_tag(state, state.vpc.id, tags)
            state.vpc.tags.update(tags)
        self._set_dns(state.vpc, support=dns_support, hostnames=dns_hostnames)

    def _set_dns(self, vpc: Vpc, *, support: bool, hostnames: bool) -> None:
        ec2 = self.client("ec2")
        # One attribute per call: the API refuses both in one request.
        if support:
            self.ctx.retry_ec2(lambda: ec2.modify_vpc_attribute(
                VpcId=vpc.id, EnableDnsSupport={"Value": True}))
            vpc.dns_support = True
        if hostnames:
            self.ctx.retry_ec2(lambda: ec2.modify_vpc_attribute(
                VpcId=vpc.id, EnableDnsHostnames={"Value": True}))
            vpc.dns_hostnames = True

    def apply_create_subnet(self, state: NetworkState, cidr: str, az: str, tags: dict) -> None:
        ec2 = self.client("ec2")
        subnet = self.ctx.retry_ec2(lambda: ec2.create_subnet(
            VpcId=state.vpc.id, CidrBlock=cidr, AvailabilityZone=az,
            TagSpecifications=[{"ResourceType": "subnet", "Tags": naming.as_aws(tags)}]))["Subnet"]
        state.subnets[cidr] = Subnet(subnet["SubnetId"], cidr, az, tags, False)

    def apply_update_subnet(self, state: NetworkState, subnet_id: str, tags: dict,
                            private: bool) -> None:
        if tags:
            self.apply_tag(state, subnet_id, tags)
        if private:
            self.client("ec2").modify_subnet_attribute(
                SubnetId=subnet_id, MapPublicIpOnLaunch={"Value": False})

    def apply_create_route_table(self, state: NetworkState, cidr: str, tags: dict) -> None:
        ec2 = self.client("ec2")
        table = self.ctx.retry_ec2(lambda: ec2.create_route_table(
            VpcId=state.vpc.id,
            TagSpecifications=[{"ResourceType": "route-table", "Tags": naming.as_aws(tags)}],
        ))["RouteTable"]
        state.route_tables.append(RouteTable(table["RouteTableId"], tags, [], None))
        self.apply_associate(state, table["RouteTableId"], cidr)

    def apply_associate(self, state: NetworkState, route_table_id: str, cidr: str) -> None:
        subnet_id = state.subnets[cidr].id
        self.ctx.retry_ec2(lambda: self.client("ec2").associate_route_table(
            RouteTableId=route_table_id, SubnetId=subnet_id))
        for table in state.route_tables:
            if table.id == route_table_id:
                table.subnet_ids.append(subnet_id)

    def apply_tag(self, state: NetworkState, resource_id: str, tags: dict) -> None:
        self.ctx.retry_ec2(lambda: self.client("ec2").create_tags(
            Resources=[resource_id], Tags=naming.as_aws(tags)))

    # -- outputs -------------------------------------------------------------------

    def outputs(self, state: NetworkState) -> dict:
        subnets = [state.subnets.get(s.cidr) for s in self.config.network.subnets]
        tables = []
        for subnet in subnets:
            table = next((rt for rt in state.route_tables
                          if subnet is not None and subnet.id in rt.subnet_ids), None)
            tables.append(table.id if table else UNKNOWN)
        return {
            "vpc_id": state.vpc.id if state.vpc else UNKNOWN,
            "vpc_cidr": self.config.network.cidr,
            "subnet_ids": [s.id if s else UNKNOWN for s in subnets],
            "route_table_ids": tables,
            "availability_zones": [s.az for s in self.config.network.subnets],
        }


STEP = NetworkStep
