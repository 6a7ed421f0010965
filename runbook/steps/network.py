"""Step `network`: the VPC, its private subnets and their route tables, and, when the file
lists `network.public_subnets`, the public subnets with an internet gateway and one
route table to it (for MSK's public access in phase a5).

The VPC is found, in order, by `network.vpc_id`, by runbook's tags, or by its CIDR
block, so that a VPC made by the old shell scripts is adopted (and tagged) rather than
duplicated (runbook.resources.vpc).

Each subnet gets its own route table with only the VPC-local route: private means no
route to an internet gateway, and an adopted subnet that has one is refused. The public
table is associated only with the public subnets; a private subnet found in it is
refused like any private subnet with a route to a gateway.

The region's availability zones are read only while a subnet of the file is still to be
made (`zones_needed`): one that exists shows its zone is the account's, and a subnet in
another zone than the file says is refused anyway (it cannot move).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runbook.aws import naming
from runbook.engine import UNKNOWN, Change, Outputs, Step
from runbook.errors import PlanError
from runbook.resources.base import Apply, Inventory
from runbook.resources.internet_gateway import (InternetGateway, InternetGatewayFound,
                                                InternetGatewaySpec, PublicRouteTable,
                                                PublicRouteTableSpec)
from runbook.resources.vpc import (RouteTable, RouteTableFound, RouteTableSpec, Subnet,
                                   SubnetFound, SubnetSpec, Vpc, VpcFound, VpcSpec, zones)

STEP_NAME = "network"
VPC, SUBNET, ROUTE_TABLE = Vpc(), Subnet(), RouteTable()
GATEWAY, PUBLIC_TABLE = InternetGateway(), PublicRouteTable()
GATEWAY_KEY, PUBLIC_TABLE_KEY = "internet-gateway", "public-route-table"


@dataclass(frozen=True)
class NetworkOutputs(Outputs):
    vpc_id: str
    vpc_cidr: str
    subnet_ids: tuple
    route_table_ids: tuple
    availability_zones: tuple
    public_subnet_ids: tuple = ()           # network.public_subnets' order; () when none
    internet_gateway_id: str | None = None  # None when there are no public subnets


@dataclass
class NetworkState(Inventory):
    """found: "vpc", "subnet <cidr>" (private and public ones: their blocks are apart),
    "route-table <cidr>" (a private subnet's table), "internet-gateway" and
    "public-route-table"."""

    zones: set[str] | None = None       # None: not read, every subnet of the file exists
    subnets: dict[str, SubnetFound] = field(default_factory=dict)     # every one, by CIDR
    route_tables: list[RouteTableFound] = field(default_factory=list)  # every one


def subnet_key(cidr: str) -> str:
    return f"subnet {cidr}"


def table_key(cidr: str) -> str:
    return f"route-table {cidr}"


class NetworkStep(Step):
    name = STEP_NAME

    # -- what the step wants ---------------------------------------------------------

    def vpc_spec(self) -> VpcSpec:
        return vpc_spec(self.config)

    def subnet_spec(self, index: int, wanted, vpc_id) -> SubnetSpec:
        name = naming.subnet_name(self.config, wanted.az)
        return SubnetSpec(name, naming.tags(self.config, STEP_NAME, name),
                          f"network.subnets[{index}].cidr", wanted.id, vpc_id=vpc_id,
                          cidr=wanted.cidr, az=wanted.az)

    def public_subnet_spec(self, index: int, wanted, vpc_id) -> SubnetSpec:
        name = naming.public_subnet_name(self.config, wanted.az)
        return SubnetSpec(name, naming.tags(self.config, STEP_NAME, name),
                          f"network.public_subnets[{index}].cidr", None, vpc_id=vpc_id,
                          cidr=wanted.cidr, az=wanted.az)

    def gateway_spec(self, vpc_id) -> InternetGatewaySpec:
        name = naming.internet_gateway_name(self.config)
        return InternetGatewaySpec(name, naming.tags(self.config, STEP_NAME, name),
                                   "network.public_subnets", vpc_id=vpc_id)

    def public_table_spec(self, vpc_id, gateway_id, subnet_ids: tuple) -> PublicRouteTableSpec:
        name = naming.public_route_table_name(self.config)
        return PublicRouteTableSpec(name, naming.tags(self.config, STEP_NAME, name),
                                    "network.public_subnets", vpc_id=vpc_id,
                                    gateway_id=gateway_id, subnet_ids=subnet_ids)

    def table_spec(self, index: int, wanted, vpc_id, subnet_id) -> RouteTableSpec:
        name = naming.route_table_name(self.config, wanted.az)
        return RouteTableSpec(name, naming.tags(self.config, STEP_NAME, name),
                              f"network.subnets[{index}].cidr", vpc_id=vpc_id,
                              subnet_id=subnet_id)

    # -- read ------------------------------------------------------------------------

    def read(self) -> NetworkState:
        with self.api.reading():
            vpc = VPC.find(self.api, self.vpc_spec())
            subnets = Subnet.in_vpc(self.api, vpc.id) if vpc is not None else {}
            available = zones(self.api) if _missing(self.config, subnets) else None
            if vpc is None:
                return self.state(available, None, {}, [])
            gateway = None
            if self.config.network.public_subnets:
                gateway = GATEWAY.find(self.api, self.gateway_spec(vpc.id))
            return self.state(available, vpc, subnets, RouteTable.in_vpc(self.api, vpc.id),
                              gateway)

    def state(self, zones: set[str] | None, vpc: VpcFound | None, subnets: dict[str, SubnetFound],
              route_tables: list[RouteTableFound],
              gateway: InternetGatewayFound | None = None) -> NetworkState:
        """What was read, keyed for the plan: pure, so that plans are tested from data."""
        state = NetworkState(found={"vpc": vpc}, zones=zones, subnets=subnets,
                             route_tables=route_tables)
        if vpc is None:
            return state
        self._public_state(state, vpc, gateway)
        for index, wanted in enumerate(self.config.network.subnets):
            subnet = subnets.get(wanted.cidr)
            if subnet is None:
                continue
            # Refuse the file's subnets, and their route tables, when another environment
            # owns them (a VPC shared by two environments that both listed one block).
            spec = self.subnet_spec(index, wanted, vpc.id)
            SUBNET.claim(spec, subnet, f"ec2:subnet {subnet.id} ({subnet.cidr})")
            state.found[subnet_key(wanted.cidr)] = subnet
            for table in route_tables:
                if subnet.id in table.subnet_ids:
                    ROUTE_TABLE.claim(spec, table, f"ec2:route-table {table.id}")
                    state.found.setdefault(table_key(wanted.cidr), table)
            if table_key(wanted.cidr) not in state.found:
                # A table of ours with no subnet: made by a run that stopped before it
                # associated it. It is associated, not made again.
                name = naming.route_table_name(self.config, wanted.az)
                state.found[table_key(wanted.cidr)] = next(
                    (rt for rt in route_tables if rt.tags.get("Name") == name
                     and rt.tags.get(naming.ENV_TAG) == self.config.env), None)
        return state

    def _public_state(self, state: NetworkState, vpc: VpcFound,
                      gateway: InternetGatewayFound | None) -> None:
        """The public subnets, the gateway and the public table, claimed as the private
        ones are: another environment's are refused."""
        public = self.config.network.public_subnets
        if not public:
            return
        for index, wanted in enumerate(public):
            subnet = state.subnets.get(wanted.cidr)
            if subnet is not None:
                SUBNET.claim(self.public_subnet_spec(index, wanted, vpc.id), subnet,
                             f"ec2:subnet {subnet.id} ({subnet.cidr})")
                state.found[subnet_key(wanted.cidr)] = subnet
        if gateway is not None:
            GATEWAY.claim(self.gateway_spec(vpc.id), gateway)
        state.found[GATEWAY_KEY] = gateway
        spec = self.public_table_spec(vpc.id, None, ())
        ids = {state.found[subnet_key(w.cidr)].id for w in public
               if state.found.get(subnet_key(w.cidr))}
        table = PUBLIC_TABLE.choose(spec, **PUBLIC_TABLE.pick(spec, state.route_tables, ids))
        if table is not None:
            PUBLIC_TABLE.claim(spec, table, f"ec2:route-table {table.id}")
        state.found[PUBLIC_TABLE_KEY] = table

    # -- plan ------------------------------------------------------------------------

    def plan(self, state: NetworkState) -> list[Change]:
        changes = VPC.plan(self.vpc_spec(), state.found.get("vpc"), "vpc")
        vpc_id = state.ref("vpc")
        tables_planned: set[str] = set()  # a table shared by several subnets is planned once
        for index, wanted in enumerate(self.config.network.subnets):
            self._check_zone(state, f"network.subnets[{index}].az", wanted)
            changes += self._plan_subnet(state, index, wanted, vpc_id, tables_planned)
        return changes + self._plan_public(state, vpc_id)

    def _plan_public(self, state: NetworkState, vpc_id) -> list[Change]:
        """The public subnets, then the gateway, then the one table that routes them to
        it. A public subnet served by another table is refused: associating it would be
        refused by AWS, and replacing that association is not runbook's to decide."""
        public = self.config.network.public_subnets
        if not public:
            return []
        changes: list[Change] = []
        table = state.found.get(PUBLIC_TABLE_KEY)
        for index, wanted in enumerate(public):
            self._check_zone(state, f"network.public_subnets[{index}].az", wanted)
            current = state.subnets.get(wanted.cidr)
            if current is not None:
                other = next((t for t in state.route_tables if current.id in t.subnet_ids
                              and (table is None or t.id != table.id)), None)
                if other is not None:
                    raise PlanError(STEP_NAME, f"network.public_subnets[{index}]",
                                    f"subnet {current.id} ({current.cidr}) is associated with "
                                    f"route table {other.id}, not with the public table "
                                    f"{naming.public_route_table_name(self.config)}. Remove "
                                    "that association, or use another CIDR.")
            changes += SUBNET.plan(self.public_subnet_spec(index, wanted, vpc_id), current,
                                   subnet_key(wanted.cidr))
        changes += GATEWAY.plan(self.gateway_spec(vpc_id), state.found.get(GATEWAY_KEY),
                                GATEWAY_KEY)
        spec = self.public_table_spec(vpc_id, state.ref(GATEWAY_KEY),
                                      tuple(state.ref(subnet_key(w.cidr)) for w in public))
        return changes + PUBLIC_TABLE.plan(spec, table, PUBLIC_TABLE_KEY)

    def _check_zone(self, state: NetworkState, field_name: str, wanted) -> None:
        """Refuse a subnet to be made in a zone the account does not have. One that
        exists is judged by Subnet.check: it cannot move."""
        if wanted.cidr in state.subnets or wanted.az in (state.zones or ()):
            return
        have = ", ".join(sorted(state.zones or ()))
        raise PlanError(STEP_NAME, field_name,
                        f"{wanted.az} is not an availability zone of this account in "
                        f"{self.ctx.aws.region} (it has {have})")

    def _plan_subnet(self, state: NetworkState, index: int, wanted, vpc_id,
                     tables_planned: set[str]) -> list[Change]:
        spec = self.subnet_spec(index, wanted, vpc_id)
        current = state.subnets.get(wanted.cidr)
        if wanted.id and (current is None or current.id != wanted.id):
            raise PlanError(STEP_NAME, f"network.subnets[{index}].id",
                            f"{wanted.id} is not a subnet with CIDR {wanted.cidr} in the VPC")
        key, rt_key = subnet_key(wanted.cidr), table_key(wanted.cidr)
        table = self.table_spec(index, wanted, vpc_id, state.ref(key))
        changes = SUBNET.plan(spec, current, key)
        if current is None:
            return changes + self._create_table(table, rt_key, wanted.cidr)

        table_found = state.found.get(rt_key)
        if table_found is None:
            return changes + self._create_table(table, rt_key, current.id)
        if current.id not in table_found.subnet_ids:
            return changes + [Change("update", ROUTE_TABLE.label(table, table_found), "associate",
                                     {"spec": table, "diff": {}},
                                     {"subnet": {"from": None, "to": current.id}},
                                     run=Apply(ROUTE_TABLE, rt_key, "update"))]
        if table_found.internet_route:
            raise PlanError(STEP_NAME, f"network.subnets[{index}]",
                            f"subnet {current.id} routes 0.0.0.0/0 to "
                            f"{table_found.internet_route} through {table_found.id}, so it "
                            "is public. runbook provisions private subnets: use other "
                            "CIDRs or remove that route.")
        if table_found.id in tables_planned:
            return changes
        tables_planned.add(table_found.id)
        return changes + ROUTE_TABLE.plan(table, table_found, rt_key)

    @staticmethod
    def _create_table(spec: RouteTableSpec, key: str, subnet) -> list[Change]:
        [change] = ROUTE_TABLE.plan(spec, None, key)
        return [Change(change.action, change.resource, change.op, change.args,
                       {"subnet": subnet}, run=change.run)]

    # -- outputs -------------------------------------------------------------------------

    def outputs(self, state: NetworkState) -> NetworkOutputs:
        wanted = self.config.network.subnets
        vpc = state.found.get("vpc")
        subnets = [state.found.get(subnet_key(s.cidr)) for s in wanted]
        tables = [state.found.get(table_key(s.cidr)) for s in wanted]
        return NetworkOutputs(
            vpc_id=vpc.id if vpc else UNKNOWN,
            vpc_cidr=self.config.network.cidr,
            subnet_ids=tuple(s.id if s else UNKNOWN for s in subnets),
            route_table_ids=tuple(t.id if t and s and s.id in t.subnet_ids else UNKNOWN
                                  for s, t in zip(subnets, tables)),
            availability_zones=tuple(s.az for s in wanted),
            **self._public_outputs(state))

    def _public_outputs(self, state: NetworkState) -> dict:
        public = self.config.network.public_subnets
        if not public:
            return {"public_subnet_ids": (), "internet_gateway_id": None}
        subnets = [state.found.get(subnet_key(s.cidr)) for s in public]
        gateway = state.found.get(GATEWAY_KEY)
        return {"public_subnet_ids": tuple(s.id if s else UNKNOWN for s in subnets),
                "internet_gateway_id": gateway.id if gateway else UNKNOWN}


STEP = NetworkStep


def vpc_spec(config) -> VpcSpec:
    """The environment's VPC: by network.vpc_id, else by runbook's tags, else by block."""
    net = config.network
    return VpcSpec(naming.vpc_name(config), naming.tags(config, STEP_NAME, naming.vpc_name(config)),
                   "network.vpc_id" if net.vpc_id else "network.cidr", net.vpc_id,
                   cidr=net.cidr)


def _missing(config, subnets: dict[str, SubnetFound]) -> bool:
    """Whether a subnet of the file, private or public, is not among `subnets` (by block)."""
    return any(wanted.cidr not in subnets
               for wanted in (*config.network.subnets, *config.network.public_subnets))


def zones_needed(api, config) -> bool:
    """Read only (through the run's read cache, which the step's read then reuses):
    whether a subnet of the file is still to be made, so that its zone must be one of
    the region's. A VPC the step would refuse says yes: the step says why."""
    from runbook.errors import RunbookError

    try:
        vpc = VPC.find(api, vpc_spec(config))
    except RunbookError:
        return True
    return vpc is None or _missing(config, Subnet.in_vpc(api, vpc.id))
