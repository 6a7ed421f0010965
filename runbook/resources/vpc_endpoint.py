"""Interface VPC endpoints (step `vpc-integrate`): one per service, in the Lambda subnets,
with private DNS, one security group and an endpoint policy.

An endpoint is found in its VPC by service: runbook's own first, then one with private
DNS, so that one made outside runbook is adopted and completed, never duplicated. moto
5.2.5 is laxer than AWS and runbook does not rely on the API to refuse anything: it
accepts a second endpoint for the same service with private DNS, ignores ClientToken,
keeps deleted endpoints listed (state `deleted`) and ignores PrivateDnsEnabled in
ModifyVpcEndpoint. So endpoints in a final state are left out here, and the step
describes again after apply.

Teardown deletes an endpoint with DeleteVpcEndpoints, which answers at once and goes on
in the background (state `deleting`, then `deleted`): its network interfaces keep the
subnets and the security group until it is gone. A batch call, it reports a failure in
`Unsuccessful` rather than as an error.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from runbook.aws import naming, policies
from runbook.aws.api import Api, or_none, pages
from runbook.aws.reachability import FINAL_STATES, Endpoint, parse_endpoint
from runbook.engine.plan import is_known
from runbook.errors import StepFailed
from runbook.resources.base import DeleteOptions, Resource, Spec

DELETING, DELETED = "deleting", "deleted"
# What DeleteVpcEndpoints puts in Unsuccessful for an endpoint that is not there.
_NOT_THERE = frozenset({"InvalidVpcEndpointId.NotFound", "InvalidVpcEndpoint.NotFound"})


@dataclass(frozen=True)
class VpcEndpointSpec(Spec):
    vpc_id: Any = None
    service: str = ""                    # "secretsmanager", "rds-data"
    service_name: str = ""               # "com.amazonaws.<region>.secretsmanager"
    subnets: tuple = ()                  # the subnets to reach it from, in order
    zones: dict = field(default_factory=dict)  # {subnet id: zone} of the VPC's subnets
    group_id: Any = None                 # its security group, or an Unknown with a ref
    policy: dict = field(default_factory=dict)  # its endpoint policy


class VpcEndpoint(Resource[VpcEndpointSpec, Endpoint]):
    kind, service, plural = "ec2:vpc-endpoint", "ec2", "VPC endpoints"

    # -- read ------------------------------------------------------------------------

    @staticmethod
    def in_vpc(api: Api, vpc_id: str) -> list[Endpoint]:
        """The VPC's interface endpoints, but those in a final state (one read for all)."""
        found = []
        for raw in pages(api.client("ec2"), "describe_vpc_endpoints", "VpcEndpoints",
                         Filters=[{"Name": "vpc-id", "Values": [vpc_id]}]):
            endpoint = parse_endpoint(raw, api.region)
            if (raw.get("VpcId") == vpc_id and endpoint.type.lower() == "interface"
                    and endpoint.state.lower() not in FINAL_STATES):
                found.append(endpoint)
        return found

    @staticmethod
    def select(spec: VpcEndpointSpec, endpoints: list[Endpoint]) -> Endpoint | None:
        """The endpoint for spec's service: runbook's own first, then one with private
        DNS. Pure: one read of the VPC's endpoints serves every service and the preflight."""
        def ours(endpoint: Endpoint) -> bool:
            return (endpoint.tags.get(naming.ENV_TAG) == spec.env
                    and endpoint.tags.get(naming.STEP_TAG) == spec.step)

        candidates = [e for e in endpoints if e.service == spec.service]
        candidates.sort(key=lambda e: (not ours(e), not e.private_dns, e.id))
        return candidates[0] if candidates else None

    # -- plan (pure) -------------------------------------------------------------------

    @staticmethod
    def subnets_to_add(spec: VpcEndpointSpec, have: list[str]) -> list:
        """spec's subnets, one per zone, in zones an endpoint in `have` does not reach.

        An interface endpoint takes one subnet per availability zone: AWS refuses a second
        one in a zone (moto accepts it), and it would add nothing. Subnets not described
        yet (a plan before the network exists) are all listed.
        """
        zones = {spec.zones[s] for s in have if s in spec.zones}
        add = []
        for subnet_id in spec.subnets:
            zone = spec.zones.get(subnet_id)
            if subnet_id in have or (zone is not None and zone in zones):
                continue
            if zone is not None:
                zones.add(zone)
            elif is_known(subnet_id):
                continue  # not in the VPC: the step refuses that before it plans
            add.append(subnet_id)
        return add

    def summary(self, spec: VpcEndpointSpec) -> dict:
        return {"service": spec.service_name, "type": "Interface",
                "subnets": self.subnets_to_add(spec, []), "private_dns": True,
                "security_group": spec.group_id, "policy": policies.summary(spec.policy)}

    def diff(self, spec: VpcEndpointSpec, found: Endpoint) -> dict:
        diff: dict = {}
        if not found.private_dns:
            diff["private_dns"] = {"from": False, "to": True}
        if spec.group_id not in found.group_ids:
            diff["security_groups"] = {"from": list(found.group_ids),
                                       "to": found.group_ids + [spec.group_id]}
        add_subnets = self.subnets_to_add(spec, found.subnet_ids)
        if add_subnets:
            diff["subnets"] = {"from": list(found.subnet_ids),
                               "to": found.subnet_ids + add_subnets}
        if not policies.same(found.policy, spec.policy):
            diff["policy"] = {"from": policies.summary(found.policy),
                              "to": policies.summary(spec.policy)}
        return diff

    # -- apply -------------------------------------------------------------------------

    def create(self, api: Api, spec: VpcEndpointSpec) -> Endpoint:
        ec2 = api.client("ec2")
        # One token per planned create: a retried request (after a timeout, say) returns
        # the endpoint the first attempt made instead of making a second one.
        token = f"runbook-{uuid.uuid4().hex}"
        raw = api.retry_ec2(lambda: ec2.create_vpc_endpoint(
            VpcEndpointType="Interface", VpcId=spec.vpc_id, ServiceName=spec.service_name,
            SubnetIds=self.subnets_to_add(spec, []), SecurityGroupIds=[spec.group_id],
            PrivateDnsEnabled=True, ClientToken=token, PolicyDocument=json.dumps(spec.policy),
            TagSpecifications=naming.tag_specifications("vpc-endpoint", spec.tags),
        ))["VpcEndpoint"]
        return parse_endpoint(raw, api.region)

    def update(self, api: Api, spec: VpcEndpointSpec, found: Endpoint, diff: dict,
               tags: dict) -> Endpoint:
        """Private DNS on, the group and the missing zones' subnets added, the policy
        replaced (whole: the plan showed it), in one ModifyVpcEndpoint."""
        params: dict = {"VpcEndpointId": found.id}
        if "private_dns" in diff:
            params["PrivateDnsEnabled"] = True
        if "security_groups" in diff:
            params["AddSecurityGroupIds"] = [spec.group_id]
        add_subnets = self.subnets_to_add(spec, found.subnet_ids) if "subnets" in diff else []
        if add_subnets:
            params["AddSubnetIds"] = add_subnets
        if "policy" in diff:
            params["PolicyDocument"] = json.dumps(spec.policy)
        api.client("ec2").modify_vpc_endpoint(**params)
        found.private_dns = found.private_dns or "private_dns" in diff
        found.group_ids = found.group_ids + params.get("AddSecurityGroupIds", [])
        found.subnet_ids = found.subnet_ids + add_subnets
        if "policy" in diff:
            found.policy = spec.policy
        return found

    # -- teardown --------------------------------------------------------------------

    def owned(self, api: Api, env: str) -> list[Endpoint]:
        """The environment's endpoints, but the deleted ones DescribeVpcEndpoints still
        lists for a while. One being deleted is listed, so that a teardown run again
        after a crash waits for it to be gone (its network interfaces keep the subnets
        and the group until then); so is a failed or rejected one, which still exists."""
        return [endpoint for endpoint in (
                    parse_endpoint(raw, api.region)
                    for raw in pages(api.client("ec2"), "describe_vpc_endpoints",
                                     "VpcEndpoints", Filters=naming.env_filter(env)))
                if endpoint.state.lower() != DELETED]

    def delete(self, api: Api, found: Endpoint, options: DeleteOptions = DeleteOptions()) -> None:
        """DeleteVpcEndpoints, unless the endpoint is gone or being deleted already."""
        if self._state(api, found) in (None, DELETING, DELETED):
            return
        answer = api.client("ec2").delete_vpc_endpoints(VpcEndpointIds=[found.id])
        for failure in answer.get("Unsuccessful") or ():
            error = failure.get("Error") or {}
            if error.get("Code") not in _NOT_THERE:
                raise StepFailed(found.tags.get(naming.STEP_TAG, "destroy"), self.title(found),
                                 f"DeleteVpcEndpoints: {error.get('Code')}: "
                                 f"{error.get('Message')}")

    def gone(self, api: Api, found: Endpoint) -> bool:
        """No longer described, or described as deleted."""
        return self._state(api, found) in (None, DELETED)

    @staticmethod
    def _state(api: Api, found: Endpoint) -> str | None:
        """The endpoint's state, lower case, or None when it is not described."""
        endpoints = or_none(lambda: api.client("ec2").describe_vpc_endpoints(
            VpcEndpointIds=[found.id])["VpcEndpoints"])
        return str(endpoints[0].get("State", "")).lower() if endpoints else None
