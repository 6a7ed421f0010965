"""The internet gateway and the public route table (step `network`, when the file lists
`network.public_subnets`): what MSK's public access (phase a5) needs, and nothing that
the private subnets use.

Both are made with their tags in the create call, so that a run cut short right after
a create leaves a resource the next run finds by its tags; every later write (attach,
route, associate) is planned again from what the next run reads.

Teardown detaches the gateway from its VPC before deleting it (AWS refuses to delete an
attached one); the public table is a route table like the private ones, listed and
deleted by runbook.resources.vpc.RouteTable.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runbook.aws import naming
from runbook.aws.api import Api, or_none, pages
from runbook.aws.retry import error_code
from runbook.engine.plan import diff_field, is_known
from runbook.errors import PlanError
from runbook.resources.base import DeleteOptions, Found, Resource, Spec
from runbook.resources.vpc import RouteTable, RouteTableFound

ANYWHERE = "0.0.0.0/0"
# What AWS answers a DetachInternetGateway from a VPC it is not attached to (any more).
NOT_ATTACHED = "Gateway.NotAttached"


# -- the internet gateway ----------------------------------------------------------------

@dataclass(frozen=True)
class InternetGatewaySpec(Spec):
    vpc_id: str = ""


@dataclass
class InternetGatewayFound(Found):
    vpc_ids: list = field(default_factory=list)     # the VPCs it is attached to (0 or 1)


class InternetGateway(Resource[InternetGatewaySpec, InternetGatewayFound]):
    """Found by runbook's tags, else as the gateway attached to the VPC (one made by hand
    or by the old scripts: a VPC takes only one, so a second could not be attached)."""

    kind, service, plural = "ec2:internet-gateway", "ec2", "internet gateways"
    tags_in_update = True

    def by_tags(self, api: Api, spec: InternetGatewaySpec) -> list[InternetGatewayFound]:
        return self._described(api, naming.owner_filters(spec.env, spec.step))

    def by_name(self, api: Api, spec: InternetGatewaySpec) -> list[InternetGatewayFound]:
        return self._described(api, [{"Name": "attachment.vpc-id", "Values": [spec.vpc_id]}])

    @staticmethod
    def _described(api: Api, filters: list[dict]) -> list[InternetGatewayFound]:
        return [_gateway(g) for g in pages(api.client("ec2"), "describe_internet_gateways",
                                           "InternetGateways", Filters=filters)]

    def check(self, spec: InternetGatewaySpec, found: InternetGatewayFound) -> None:
        """A gateway is attached to one VPC at most: ours, or none yet."""
        other = [v for v in found.vpc_ids if v != spec.vpc_id]
        if other and is_known(spec.vpc_id):
            raise PlanError(spec.step, self.label(spec, found),
                            f"it is attached to {other[0]}, not to this environment's VPC "
                            f"{spec.vpc_id}. Detach it, or remove its runbook tags.")

    def summary(self, spec: InternetGatewaySpec) -> dict:
        return {"vpc": spec.vpc_id}

    def diff(self, spec: InternetGatewaySpec, found: InternetGatewayFound) -> dict:
        diff: dict = {}
        diff_field(diff, "vpc", found.vpc_ids[0] if found.vpc_ids else None, spec.vpc_id)
        return diff

    def create(self, api: Api, spec: InternetGatewaySpec) -> InternetGatewayFound:
        gateway = api.client("ec2").create_internet_gateway(
            TagSpecifications=naming.tag_specifications("internet-gateway", spec.tags)
        )["InternetGateway"]
        found = InternetGatewayFound(gateway["InternetGatewayId"], dict(spec.tags), [])
        return self._attach(api, found, spec.vpc_id)

    def update(self, api: Api, spec: InternetGatewaySpec, found: InternetGatewayFound,
               diff: dict, tags: dict) -> InternetGatewayFound:
        if tags:
            self.tag(api, found, tags)
        if "vpc" in diff:
            self._attach(api, found, spec.vpc_id)
        return found

    @staticmethod
    def _attach(api: Api, found: InternetGatewayFound, vpc_id: str) -> InternetGatewayFound:
        api.retry_ec2(lambda: api.client("ec2").attach_internet_gateway(
            InternetGatewayId=found.id, VpcId=vpc_id))
        found.vpc_ids = [vpc_id]
        return found

    # -- teardown --------------------------------------------------------------------

    def owned(self, api: Api, env: str) -> list[InternetGatewayFound]:
        return self._described(api, naming.env_filter(env))

    def delete(self, api: Api, found: InternetGatewayFound,
               options: DeleteOptions = DeleteOptions()) -> None:
        """Detach the gateway from each VPC it is attached to (read again here: AWS
        refuses to delete an attached gateway), then DeleteInternetGateway. Without the
        propagation retry, which would retry the "NotFound" a delete takes as done."""
        ec2 = api.client("ec2")
        gateways = or_none(lambda: ec2.describe_internet_gateways(
            InternetGatewayIds=[found.id])["InternetGateways"])
        if not gateways:
            return
        for vpc_id in _gateway(gateways[0]).vpc_ids:
            try:
                or_none(lambda vpc_id=vpc_id: ec2.detach_internet_gateway(
                    InternetGatewayId=found.id, VpcId=vpc_id))
            except Exception as exc:  # noqa: BLE001 - only "not attached" is done already
                if error_code(exc) != NOT_ATTACHED:
                    raise
        found.vpc_ids = []
        or_none(lambda: ec2.delete_internet_gateway(InternetGatewayId=found.id))


def _gateway(raw: dict) -> InternetGatewayFound:
    """A described gateway, with the VPCs it is attached to (or being attached to)."""
    return InternetGatewayFound(raw["InternetGatewayId"], naming.from_aws(raw.get("Tags")),
                                [a["VpcId"] for a in raw.get("Attachments", ())
                                 if a.get("State") in ("attached", "available", "attaching")])


# -- the public route table ----------------------------------------------------------------

@dataclass(frozen=True)
class PublicRouteTableSpec(Spec):
    vpc_id: str = ""
    gateway_id: str = ""                 # the internet gateway 0.0.0.0/0 leads to
    subnet_ids: tuple = ()               # the public subnets, in the file's order


class PublicRouteTable(Resource[PublicRouteTableSpec, RouteTableFound]):
    """One table for every public subnet: the VPC-local route and 0.0.0.0/0 to the
    internet gateway. Found, among the VPC's tables (RouteTable.in_vpc), by its Name and
    runbook's tags, else as the table a public subnet is associated with."""

    kind, service, plural = "ec2:route-table", "ec2", "route tables"
    tags_in_update = True

    @staticmethod
    def pick(spec: PublicRouteTableSpec, tables: list[RouteTableFound],
             public_subnet_ids: set[str]) -> dict:
        """What `choose` picks from, pure: the tables of this environment's step with
        the spec's Name, else the one table that serves public subnets and nothing else
        (the old scripts' public table). A table that also serves another subnet is
        never adopted: its route to the gateway would make that subnet public."""
        tagged = [t for t in tables if t.tags.get("Name") == spec.name
                  and t.tags.get(naming.ENV_TAG) == spec.env
                  and t.tags.get(naming.STEP_TAG) == spec.step]
        if tagged:
            return {"tagged": tagged}
        named = [t for t in tables
                 if t.subnet_ids and set(t.subnet_ids) <= public_subnet_ids]
        # Public subnets spread over several tables: none is adopted, and the plan
        # names each public subnet that another table serves.
        return {"tagged": [], "named": named if len(named) == 1 else []}

    def summary(self, spec: PublicRouteTableSpec) -> dict:
        return {"route": f"{ANYWHERE} -> {spec.gateway_id}", "subnets": list(spec.subnet_ids)}

    def diff(self, spec: PublicRouteTableSpec, found: RouteTableFound) -> dict:
        diff: dict = {}
        if found.default_route != spec.gateway_id:
            diff["route"] = {"from": _route(found.default_route), "to": _route(spec.gateway_id)}
        missing = _missing(spec, found)
        if missing:
            diff["subnets"] = {"from": list(found.subnet_ids),
                               "to": list(found.subnet_ids) + missing}
        return diff

    def create(self, api: Api, spec: PublicRouteTableSpec) -> RouteTableFound:
        ec2 = api.client("ec2")
        table = api.retry_ec2(lambda: ec2.create_route_table(
            VpcId=spec.vpc_id,
            TagSpecifications=naming.tag_specifications("route-table", spec.tags)))["RouteTable"]
        found = RouteTableFound(table["RouteTableId"], dict(spec.tags), [], None, None)
        return self.update(api, spec, found, {"route": True, "subnets": True}, {})

    def update(self, api: Api, spec: PublicRouteTableSpec, found: RouteTableFound,
               diff: dict, tags: dict) -> RouteTableFound:
        ec2 = api.client("ec2")
        if tags:
            self.tag(api, found, tags)
        if "route" in diff:
            # A table adopted with 0.0.0.0/0 elsewhere (a NAT gateway) has it replaced:
            # CreateRoute would be refused with RouteAlreadyExists.
            call = ec2.replace_route if found.default_route else ec2.create_route
            api.retry_ec2(lambda: call(RouteTableId=found.id, DestinationCidrBlock=ANYWHERE,
                                       GatewayId=spec.gateway_id))
            found.default_route = found.internet_route = spec.gateway_id
        for subnet_id in _missing(spec, found) if "subnets" in diff else ():
            api.retry_ec2(lambda: ec2.associate_route_table(RouteTableId=found.id,
                                                            SubnetId=subnet_id))
            found.subnet_ids.append(subnet_id)
        return found

    # -- teardown: a route table like the private ones ----------------------------------

    def owned(self, api: Api, env: str) -> list[RouteTableFound]:
        """[]: RouteTable.owned lists the public table with the private ones (one AWS
        type, one listing), so that teardown does not meet it twice."""
        return []

    def delete(self, api: Api, found: RouteTableFound,
               options: DeleteOptions = DeleteOptions()) -> None:
        RouteTable().delete(api, found, options)


def _missing(spec: PublicRouteTableSpec, found: RouteTableFound) -> list:
    """The public subnets not associated yet (one about to be made is not)."""
    return [s for s in spec.subnet_ids if not is_known(s) or s not in found.subnet_ids]


def _route(target) -> str | None:
    return None if target is None else f"{ANYWHERE} -> {target}"
