"""Security groups: the cluster's (step `database`), the Lambda functions' and the
endpoints' (step `vpc-integrate`). A group is found in its VPC by name; its rules are a
resource kind of their own (runbook.resources.security_group_rule), all owned by step
vpc-integrate.

AWS refuses to delete a group that a rule of another group references
(DependencyViolation; moto 5.2.5 deletes it), and runbook's groups reference each other
(the cluster's admits the Lambda group's, the Lambda group's lets traffic out to it).
So teardown first revokes, in every group it is about to delete, the rules that name
another group (`revoke_references`), and only then deletes any of them. AWS also refuses
while a network interface uses the group (runbook.resources.network_interface).
"""

from __future__ import annotations

from dataclasses import dataclass

from runbook.aws import naming, sgrules
from runbook.aws.api import Api, or_none, pages
from runbook.aws.reachability import ALL_TRAFFIC_OUT, SecurityGroup as Found
from runbook.aws.reachability import parse_group
from runbook.resources.base import DeleteOptions, Resource, Spec
from runbook.resources.security_group_rule import revoke_rule

# The group AWS makes with every VPC, and deletes with it; never deleted on its own.
DEFAULT_GROUP = "default"


@dataclass(frozen=True)
class SecurityGroupSpec(Spec):
    vpc_id: str = ""
    description: str = ""
    # Keep the all-traffic egress AWS gives a new group; False revokes it on create.
    default_egress: bool = True
    ipv6: bool = False                  # the VPC has an IPv6 block (sgrules)


class SecurityGroup(Resource[SecurityGroupSpec, Found]):
    kind, service, plural = "ec2:security-group", "ec2", "security groups"

    def __init__(self, *, label_id: bool = True):
        self.label_id = label_id

    @staticmethod
    def named(api: Api, vpc_id: str, name: str) -> Found | None:
        """The group called `name` in the VPC (a group's name is unique in its VPC)."""
        groups = api.client("ec2").describe_security_groups(Filters=[
            {"Name": "vpc-id", "Values": [vpc_id]},
            {"Name": "group-name", "Values": [name]},
        ])["SecurityGroups"]
        return parse_group(groups[0]) if groups else None

    @staticmethod
    def in_vpc(api: Api, vpc_id: str) -> dict[str, Found]:
        """Every group of the VPC, by id (one read for all of them)."""
        return {raw["GroupId"]: parse_group(raw)
                for raw in pages(api.client("ec2"), "describe_security_groups",
                                 "SecurityGroups",
                                 Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])
                if raw.get("VpcId", vpc_id) == vpc_id}

    def create(self, api: Api, spec: SecurityGroupSpec) -> Found:
        ec2 = api.client("ec2")
        group_id = api.retry_ec2(lambda: ec2.create_security_group(
            GroupName=spec.name, VpcId=spec.vpc_id, Description=spec.description,
            TagSpecifications=naming.tag_specifications("security-group", spec.tags)))["GroupId"]
        egress = [ALL_TRAFFIC_OUT]
        if not spec.default_egress:
            sgrules.revoke_default_egress(ec2, group_id, api.retry_ec2, ipv6=spec.ipv6)
            egress = []
        return Found(group_id, spec.name, dict(spec.tags), [], egress)

    # -- for step vpc-integrate: its groups, and what a plan shows ----------------------

    @staticmethod
    def select(spec: SecurityGroupSpec, groups: dict[str, Found]) -> Found | None:
        """The group `spec` names among `groups` (in_vpc): by name, which is unique in a
        VPC and cannot change, else one that carries this environment's and step's tags
        and the Name tag. Pure, so that a step reads the VPC's groups once for all its
        uses (the preflight needs all of them) and picks its own from them."""
        by_name = [g for g in groups.values() if g.name == spec.name]
        if by_name:
            return by_name[0]
        return next((g for g in sorted(groups.values(), key=lambda g: g.id)
                     if g.tags.get(naming.ENV_TAG) == spec.env
                     and g.tags.get(naming.STEP_TAG) == spec.step
                     and g.tags.get("Name") == spec.name), None)

    def summary(self, spec: SecurityGroupSpec) -> dict:
        egress = "all (the default)" if spec.default_egress else "none (the default removed)"
        return {"vpc": spec.vpc_id, "egress": egress}

    # -- teardown --------------------------------------------------------------------

    def owned(self, api: Api, env: str) -> list[Found]:
        """The environment's groups, whichever step made them (the cluster's too), but a
        VPC's default group."""
        return [parse_group(raw) for raw in pages(api.client("ec2"), "describe_security_groups",
                                                  "SecurityGroups",
                                                  Filters=naming.env_filter(env))
                if raw.get("GroupName") != DEFAULT_GROUP]

    def delete(self, api: Api, found: Found, options: DeleteOptions = DeleteOptions()) -> None:
        """Revoke the group's rules that reference another group, then
        DeleteSecurityGroup. A group that other groups' rules reference is deleted only
        once those are revoked: teardown calls `revoke_references` for all the groups it
        deletes first. Without the propagation retry, which would retry the "NotFound"
        a delete takes as done."""
        ec2 = api.client("ec2")
        if not or_none(lambda: ec2.describe_security_groups(
                GroupIds=[found.id])["SecurityGroups"]):
            return
        revoke_references(api, [found.id])
        or_none(lambda: ec2.delete_security_group(GroupId=found.id))


def revoke_references(api: Api, group_ids: list[str]) -> int:
    """In each of `group_ids`, revoke every rule, ingress or egress, that references
    another security group (a rule that names its own group keeps no other group from
    being deleted). One read for all the groups, one revoke per rule, by its id; a rule
    gone meanwhile is done. Returns how many were revoked."""
    wanted = set(group_ids)
    if not wanted:
        return 0
    revoked = 0
    for raw in pages(api.client("ec2"), "describe_security_group_rules", "SecurityGroupRules",
                     Filters=[{"Name": "group-id", "Values": sorted(wanted)}]):
        peer = (raw.get("ReferencedGroupInfo") or {}).get("GroupId")
        if raw["GroupId"] in wanted and peer and peer != raw["GroupId"]:
            revoked += revoke_rule(api, raw["GroupId"], raw["SecurityGroupRuleId"],
                                   bool(raw.get("IsEgress")))
    return revoked
