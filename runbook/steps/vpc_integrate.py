"""Step `vpc-integrate`: the network path from Lambda functions in the VPC to the cluster
and to Secrets Manager, and a preflight that proves the path exists.

In the environment's VPC the step converges
- the Lambda security group (`<network>-lambda`): no ingress, and AWS's default egress
  (all traffic to 0.0.0.0/0), kept because the functions' outbound is bounded where it
  lands: the cluster and the endpoints admit only this group, the private subnets route
  nowhere else unless the operator adds a NAT gateway (whose path needs 443 out);
- the cluster's security group (made by step `database`): the DB port from the Lambda
  group, and AWS's default egress, kept because Aurora features open connections through
  the cluster's security group (aws_s3 import and export, aws_lambda, Aurora machine
  learning), and a cluster that uses them would lose them without it;
- the endpoints' security group (`<network>-endpoints`): TCP 443 from the Lambda group,
  and no egress (an interface endpoint opens no connection either);
- interface endpoints for Secrets Manager and the RDS Data API in the network's subnets,
  with that group, private DNS and an endpoint policy (see ENDPOINT_ACTIONS).

Everything is described before anything is created, and what was made outside runbook is
adopted (groups by VPC and name, endpoints by VPC and service), never duplicated.

This step owns the whole rule set of those three groups, the cluster's included (step
`database` only makes that group, with AWS's default egress): one owner, so two steps
never undo each other's rules. Rules are compared one by one (`runbook.sgrules`): a
missing rule is added, and every other rule, in either direction, is removed, whoever
added it; a broader rule (a port range, 0.0.0.0/0) is not taken for the exact one. The
one exception is the all-traffic egress to ::/0 on a group that keeps AWS's default
egress, in a VPC with an IPv6 block: it is part of that default (moto adds it there), so
it is neither added nor removed. The new rule is added before the ones it replaces are
removed, so the functions never lose their path.

moto is laxer than AWS here, and runbook does not rely on the API to refuse anything:
moto 5.2.5 accepts a second endpoint for the same service with private DNS, ignores
ClientToken, accepts private DNS in a VPC without DNS hostnames, keeps deleted endpoints
listed (state `deleted`) and ignores PrivateDnsEnabled in ModifyVpcEndpoint. So the step
checks the VPC's DNS attributes itself, leaves endpoints in a final state out, and in
`settle` describes everything again and fails if the result differs from the plan.

`settle` (after apply, and on every re-run) then runs `runbook.reachability.preflight`
over the described state: a pure function that says whether each Lambda subnet reaches
Secrets Manager and whether the security groups let Lambda reach the cluster's port. A
missing piece fails the step with a message that names it and the way to fix it.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field

from runbook.aws import naming
from runbook.aws import policies
from runbook.aws import retry
from runbook.aws import sgrules
from runbook.engine import UNKNOWN, Change, Outputs, Step, is_known
from runbook.resources.base import tag_change
from runbook.errors import PlanError, StepFailed
from runbook.aws.reachability import (ALL_TRAFFIC_OUT, FINAL_STATES, HTTPS, Described, Endpoint,
                                  Permission, SecurityGroup, Subnet, nat_route, parse_endpoint,
                                  parse_group, preflight)

STEP_NAME = "vpc-integrate"
SERVICES = ("secretsmanager", "rds-data")
# The security groups whose rule sets this step owns, in the order their rules are planned.
GROUP_ROLES = ("database", "endpoints", "lambda")

# What may pass each endpoint: its endpoint policy allows these, on the environment's
# own resources, to principals of this account only. An endpoint made without a policy
# gets AWS's default, which allows any principal any action on any resource ("Action":
# "*"), so runbook always sets one, also on an endpoint it adopts. With private DNS all
# of the VPC's calls to the service pass the endpoint.
ENDPOINT_ACTIONS = {
    "secretsmanager": {
        # The functions' and runbook's reads of the DB and app-config secrets.
        "ReadTheSecrets": ("secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue"),
        # store-secrets' writes, for runbook run inside the VPC (database.connect: direct).
        "KeepTheSecrets": ("secretsmanager:CreateSecret", "secretsmanager:PutSecretValue",
                           "secretsmanager:RestoreSecret", "secretsmanager:TagResource"),
    },
    "rds-data": {
        # The Data API's statements and transactions, on the environment's cluster.
        "DataApiOnTheCluster": ("rds-data:BatchExecuteStatement", "rds-data:BeginTransaction",
                                "rds-data:CommitTransaction", "rds-data:ExecuteStatement",
                                "rds-data:RollbackTransaction"),
    },
}

# Interface endpoints usually become available within 1-3 minutes on AWS.
ENDPOINT_TIMEOUT_S = 10 * 60
ENDPOINT_INTERVAL_S = 10
# After a write, DescribeSecurityGroups / DescribeVpcEndpoints can lag it by a few seconds;
# 12 polls 5 s apart before the step calls the difference a failure.
PROPAGATION_TIMEOUT_S = 60
PROPAGATION_INTERVAL_S = 5


# -- the step --------------------------------------------------------------------------

@dataclass
class IntegrateState:
    vpc_id: str
    vpc_cidr: str
    subnet_ids: list[str]                 # the network step's: where the functions run
    database_group_id: str
    port: int
    account: str | None                   # in the endpoint policies
    ipv6: bool = False                    # the VPC has an IPv6 block (see sgrules)
    dns_support: bool | None = None
    dns_hostnames: bool | None = None
    subnets: dict[str, Subnet] = field(default_factory=dict)        # every subnet of the VPC
    groups: dict[str, SecurityGroup] = field(default_factory=dict)  # every group of the VPC
    endpoints: list[Endpoint] = field(default_factory=list)         # interface, not final
    # The rules of the groups this step owns: {group id: {rule id: Rule}}.
    rules: dict[str, dict[str, sgrules.Rule]] = field(default_factory=dict)


@dataclass(frozen=True)
class IntegrateOutputs(Outputs):
    lambda_security_group_id: str
    endpoint_security_group_id: str
    subnet_ids: tuple
    vpc_id: str
    endpoints: dict                       # {service: endpoint id}


class VpcIntegrateStep(Step):
    name = STEP_NAME

    def __init__(self, ctx, inputs=None):
        super().__init__(ctx, inputs)
        self._wrote = False

    # -- names -----------------------------------------------------------------------

    def _group_name(self, role: str) -> str:
        if role == "lambda":
            return naming.lambda_security_group_name(self.config)
        return naming.endpoint_security_group_name(self.config)

    def _service_name(self, service: str) -> str:
        return f"com.amazonaws.{self.ctx.aws.region}.{service}"

    def endpoint_policy(self, service: str, account: str) -> dict:
        """The endpoint policy of `service`'s endpoint (see ENDPOINT_ACTIONS)."""
        region = self.ctx.aws.region
        if service == "secretsmanager":
            # A secret's ARN ends in its name, a hyphen and six random characters.
            resource = [f"arn:aws:secretsmanager:{region}:{account}:secret:{name}-??????"
                        for name in (self.config.secrets.db, self.config.secrets.app_config)]
        else:
            resource = f"arn:aws:rds:{region}:{account}:cluster:{self.config.database.cluster_id}"
        return {"Version": "2012-10-17", "Statement": [
            {"Sid": sid, "Effect": "Allow", "Principal": "*", "Action": list(actions),
             "Resource": resource,
             "Condition": {"StringEquals": {"aws:PrincipalAccount": account}}}
            for sid, actions in ENDPOINT_ACTIONS[service].items()]}

    def _ours(self, tags: dict) -> bool:
        return (tags.get(naming.ENV_TAG) == self.config.env
                and tags.get(naming.STEP_TAG) == STEP_NAME)

    def group(self, state: IntegrateState, role: str) -> SecurityGroup | None:
        """The group for `role` ("lambda" or "endpoints"): by name in the VPC, else by tags."""
        name = self._group_name(role)
        by_name = [g for g in state.groups.values() if g.name == name]
        if by_name:
            return by_name[0]
        return next((g for g in sorted(state.groups.values(), key=lambda g: g.id)
                     if self._ours(g.tags) and g.tags.get("Name") == name), None)

    def endpoint(self, state: IntegrateState, service: str) -> Endpoint | None:
        """The VPC's endpoint for `service`: runbook's own first, then one with private DNS."""
        candidates = [e for e in state.endpoints if e.service == service]
        candidates.sort(key=lambda e: (not self._ours(e.tags), not e.private_dns, e.id))
        return candidates[0] if candidates else None

    # -- read ------------------------------------------------------------------------

    def read(self) -> IntegrateState:
        network = self.inputs.network
        database = self.inputs.database
        state = IntegrateState(network.vpc_id, network.vpc_cidr, list(network.subnet_ids),
                               database.security_group_id, int(database.port),
                               # The endpoint policies name it; outputs do not need it.
                               account=None if self.ctx.outputs_only else self.api.account())
        if not is_known(state.vpc_id):
            return state
        ec2 = self.client("ec2")
        state.dns_support = self._attribute(ec2, state.vpc_id, "enableDnsSupport")
        state.dns_hostnames = self._attribute(ec2, state.vpc_id, "enableDnsHostnames")
        vpc_filter = [{"Name": "vpc-id", "Values": [state.vpc_id]}]
        [vpc] = ec2.describe_vpcs(VpcIds=[state.vpc_id])["Vpcs"]
        state.ipv6 = any((block.get("Ipv6CidrBlockState") or {}).get("State")
                         in ("associating", "associated")
                         for block in vpc.get("Ipv6CidrBlockAssociationSet") or ())

        tables = self._all(ec2, "describe_route_tables", "RouteTables", vpc_filter)
        main = next((t for t in tables if any(a.get("Main") for a in t.get("Associations", ()))),
                    None)
        explicit = {a["SubnetId"]: t for t in tables for a in t.get("Associations", ())
                    if a.get("SubnetId")
                    and a.get("AssociationState", {}).get("State", "associated") == "associated"}
        for raw in self._all(ec2, "describe_subnets", "Subnets", vpc_filter):
            table = explicit.get(raw["SubnetId"], main)
            state.subnets[raw["SubnetId"]] = Subnet(
                raw["SubnetId"], raw["CidrBlock"], raw.get("AvailabilityZone", ""),
                table["RouteTableId"] if table else None, nat_route(table))

        for raw in self._all(ec2, "describe_security_groups", "SecurityGroups", vpc_filter):
            if raw.get("VpcId", state.vpc_id) == state.vpc_id:
                state.groups[raw["GroupId"]] = parse_group(raw)

        owned = sorted(g.id for g in (self.owned_group(state, r) for r in GROUP_ROLES) if g)
        if owned:
            state.rules = {group_id: {} for group_id in owned}
            for raw in self._all(ec2, "describe_security_group_rules", "SecurityGroupRules",
                                 [{"Name": "group-id", "Values": owned}]):
                if raw["GroupId"] in state.rules:
                    rule_id, rule = sgrules.parse(raw)
                    state.rules[raw["GroupId"]][rule_id] = rule

        for raw in self._all(ec2, "describe_vpc_endpoints", "VpcEndpoints", vpc_filter):
            endpoint = parse_endpoint(raw, self.ctx.aws.region)
            if (raw.get("VpcId") == state.vpc_id and endpoint.type.lower() == "interface"
                    and endpoint.state.lower() not in FINAL_STATES):
                state.endpoints.append(endpoint)
        self._claim(state)
        return state

    def _claim(self, state: IntegrateState) -> None:
        """Refuse the groups and endpoints this step would adopt when another environment
        owns them (their names derive from network.name)."""
        for role in ("lambda", "endpoints"):
            group = self.group(state, role)
            if group is not None:
                self.claim(f"ec2:security-group {group.name} ({group.id})", group.tags,
                           "network.name")
        for service in SERVICES:
            endpoint = self.endpoint(state, service)
            if endpoint is not None:
                self.claim(f"ec2:vpc-endpoint {service} ({endpoint.id})", endpoint.tags,
                           "network.name")

    @staticmethod
    def _all(ec2, operation: str, key: str, filters: list) -> list[dict]:
        return [item for page in ec2.get_paginator(operation).paginate(Filters=filters)
                for item in page[key]]

    @staticmethod
    def _attribute(ec2, vpc_id: str, name: str) -> bool:
        key = name[0].upper() + name[1:]
        return bool(ec2.describe_vpc_attribute(VpcId=vpc_id, Attribute=name)[key]["Value"])

    # -- plan ------------------------------------------------------------------------

    def plan(self, state: IntegrateState) -> list[Change]:
        self._check_prerequisites(state)
        changes = self._plan_group(state, "lambda") + self._plan_group(state, "endpoints")
        for role in GROUP_ROLES:  # first what is missing, then what is too much
            changes += self._plan_missing_rules(state, role)
        for role in GROUP_ROLES:
            changes += self._plan_extra_rules(state, role)
        for service in SERVICES:
            changes += self._plan_endpoint(state, service)
        return changes

    def _check_prerequisites(self, state: IntegrateState) -> None:
        if not is_known(state.vpc_id):
            return
        off = [attr for attr, on in (("enableDnsSupport", state.dns_support),
                                     ("enableDnsHostnames", state.dns_hostnames)) if not on]
        if off:
            raise PlanError(STEP_NAME, f"vpc {state.vpc_id}",
                            f"{' and '.join(off)} {'is' if len(off) == 1 else 'are'} off, and "
                            "the interface endpoints' private DNS needs enableDnsSupport and "
                            "enableDnsHostnames on. `runbook run --step network` turns them on.")
        missing = [s for s in state.subnet_ids if is_known(s) and s not in state.subnets]
        if missing:
            raise PlanError(STEP_NAME, f"subnet {missing[0]}",
                            f"the network step's subnet is not in {state.vpc_id}. Run "
                            "`runbook run --phase a1` first.")
        if is_known(state.database_group_id) and state.database_group_id not in state.groups:
            raise PlanError(STEP_NAME, f"security group {state.database_group_id}",
                            f"the database step's security group is not in {state.vpc_id}. "
                            "Run `runbook run --phase a1` first.")

    def _plan_group(self, state: IntegrateState, role: str) -> list[Change]:
        name = self._group_name(role)
        tags = naming.tags(self.config, STEP_NAME, name)
        label = f"ec2:security-group {name}"
        current = self.group(state, role)
        if current is None:
            egress = "all (the default)" if role == "lambda" else "none (the default removed)"
            diff = {"vpc": state.vpc_id, "egress": egress}
            return [Change("create", label, "create_group", {"role": role, "tags": tags}, diff)]
        return tag_change(f"{label} ({current.id})", current.id, tags, current.tags, "tag")

    def owned_group(self, state: IntegrateState, role: str) -> SecurityGroup | None:
        """The group of `role`: "database" (the cluster's), "endpoints" or "lambda"."""
        if role == "database":
            return state.groups.get(state.database_group_id)
        return self.group(state, role)

    def _owned_name(self, role: str) -> str:
        if role == "database":
            return self.config.database.security_group_name
        return self._group_name(role)

    def desired_rules(self, state: IntegrateState, role: str) -> set[sgrules.Rule]:
        """The complete rule set of `role`'s group (see the module docstring)."""
        if role == "lambda":
            return {sgrules.ALL_TRAFFIC_OUT}
        source = self.group(state, "lambda")
        port = state.port if role == "database" else HTTPS
        ingress = sgrules.Rule.tcp_from(port, source.id if source else UNKNOWN)
        if role == "database":
            return {ingress, sgrules.ALL_TRAFFIC_OUT}
        return {ingress}

    @staticmethod
    def kept_rules(state: IntegrateState, role: str) -> frozenset[sgrules.Rule]:
        """Rules of `role`'s group left as they are: the ::/0 part of AWS's default
        egress, on a group that keeps that default, in a VPC with IPv6."""
        if state.ipv6 and role in ("database", "lambda"):
            return frozenset({sgrules.ALL_TRAFFIC_OUT_V6})
        return frozenset()

    def _plan_missing_rules(self, state: IntegrateState, role: str) -> list[Change]:
        name, current = self._owned_name(role), self.owned_group(state, role)
        have = state.rules.get(current.id, {}) if current else {}
        missing, _ = sgrules.exact(have, self.desired_rules(state, role))
        changes = []
        for rule in missing:
            if rule.egress:
                if current is None:
                    continue  # AWS makes a new group with it
                changes.append(Change("create", f"{rule.kind()} {name} {rule.text()}",
                                      "authorize_egress", {"role": role},
                                      {"group": current.id, "rule": rule.text()}))
                continue
            source = self.group(state, "lambda")
            changes.append(Change(
                "create", f"ec2:ingress-rule {name} tcp/{rule.from_port} from "
                          f"{self._group_name('lambda')}",
                "authorize", {"target": role, "port": rule.from_port},
                {"group": current.id if current else UNKNOWN, "port": rule.from_port,
                 "source": source.id if source else UNKNOWN}))
        return changes

    def _plan_extra_rules(self, state: IntegrateState, role: str) -> list[Change]:
        """A `-` for each rule of `role`'s group that runbook does not want there."""
        current = self.owned_group(state, role)
        if current is None:
            return []
        have = state.rules.get(current.id, {})
        _, extra = sgrules.exact(have, self.desired_rules(state, role),
                                 self.kept_rules(state, role))
        names = {group.id: group.name for group in state.groups.values()}
        name = self._owned_name(role)
        return [Change("delete", f"{have[rule_id].kind()} {name} {have[rule_id].text(names)}",
                       "revoke", {"group_id": current.id, "rule_id": rule_id,
                                  "egress": have[rule_id].egress},
                       {"group": current.id, "rule_id": rule_id})
                for rule_id in extra]

    def _plan_endpoint(self, state: IntegrateState, service: str) -> list[Change]:
        name = naming.vpc_endpoint_name(self.config, service)
        tags = naming.tags(self.config, STEP_NAME, name)
        current = self.endpoint(state, service)
        group = self.group(state, "endpoints")
        policy = self.endpoint_policy(service, state.account)
        if current is None:
            return [Change("create", f"ec2:vpc-endpoint {name}", "create_endpoint",
                           {"service": service, "tags": tags},
                           {"service": self._service_name(service), "type": "Interface",
                            "subnets": self._subnets_to_add(state, []), "private_dns": True,
                            "security_group": group.id if group else UNKNOWN,
                            "policy": policies.summary(policy)})]
        label = f"ec2:vpc-endpoint {name} ({current.id})"
        diff: dict = {}
        if not current.private_dns:
            diff["private_dns"] = {"from": False, "to": True}
        if group is None or group.id not in current.group_ids:
            diff["security_groups"] = {"from": list(current.group_ids),
                                       "to": current.group_ids + [group.id if group else UNKNOWN]}
        add_subnets = self._subnets_to_add(state, current.subnet_ids)
        if add_subnets:
            diff["subnets"] = {"from": list(current.subnet_ids),
                               "to": current.subnet_ids + add_subnets}
        if not policies.same(current.policy, policy):
            diff["policy"] = {"from": policies.summary(current.policy),
                              "to": policies.summary(policy)}
        changes = []
        if diff:
            changes.append(Change("update", label, "modify_endpoint",
                                  {"endpoint_id": current.id, "private_dns": "private_dns" in diff,
                                   "add_group": "security_groups" in diff,
                                   "add_subnets": add_subnets, "policy": "policy" in diff},
                                  diff))
        return changes + tag_change(label, current.id, tags, current.tags, "tag")

    @staticmethod
    def _subnets_to_add(state: IntegrateState, have: list[str]) -> list[str]:
        """The Lambda subnets, one per zone, in zones an endpoint in `have` does not reach.

        An interface endpoint takes one subnet per availability zone: AWS refuses a second
        one in a zone (moto accepts it), and it would add nothing. Subnets not described
        yet (a plan before the network exists) are all listed.
        """
        zones = {state.subnets[s].az for s in have if s in state.subnets}
        add = []
        for subnet_id in state.subnet_ids:
            subnet = state.subnets.get(subnet_id)
            if subnet_id in have or (subnet is not None and subnet.az in zones):
                continue
            if subnet is not None:
                zones.add(subnet.az)
            elif is_known(subnet_id):
                continue  # not in the VPC: refused by _check_prerequisites
            add.append(subnet_id)
        return add

    # -- apply -----------------------------------------------------------------------

    def apply(self, state: IntegrateState, change: Change) -> bool | None:
        self._wrote = True
        return super().apply(state, change)

    def _existing(self, state: IntegrateState, role: str) -> SecurityGroup:
        group = self.group(state, role)
        if group is None:  # the plan creates it first; apply follows the plan's order
            raise StepFailed(STEP_NAME, f"ec2:security-group {self._group_name(role)}",
                             "not created before it was needed")
        return group

    def apply_create_group(self, state: IntegrateState, role: str, tags: dict) -> None:
        ec2, name = self.client("ec2"), self._group_name(role)
        purpose = "Lambda functions" if role == "lambda" else "interface VPC endpoints"
        group_id = self.ctx.retry_ec2(lambda: ec2.create_security_group(
            GroupName=name, VpcId=state.vpc_id,
            Description=f"{purpose} of {self.config.network.name} (managed by runbook)",
            TagSpecifications=[{"ResourceType": "security-group",
                                "Tags": naming.as_aws(tags)}]))["GroupId"]
        egress, rules = [ALL_TRAFFIC_OUT], {"(default egress)": sgrules.ALL_TRAFFIC_OUT}
        if sgrules.ALL_TRAFFIC_OUT not in self.desired_rules(state, role):
            sgrules.revoke_default_egress(ec2, group_id, self.ctx.retry_ec2, ipv6=state.ipv6)
            egress, rules = [], {}
        state.groups[group_id] = SecurityGroup(group_id, name, dict(tags), [], egress)
        state.rules[group_id] = rules

    def apply_authorize(self, state: IntegrateState, target: str, port: int) -> bool:
        ec2 = self.client("ec2")
        source = self._existing(state, "lambda").id
        if target == "database":
            target_id, what = state.database_group_id, "Aurora PostgreSQL"
        else:
            target_id, what = self._existing(state, "endpoints").id, "VPC endpoints (HTTPS)"
        try:
            answer = self.ctx.retry_ec2(lambda: ec2.authorize_security_group_ingress(
                GroupId=target_id,
                IpPermissions=[{"IpProtocol": "tcp", "FromPort": port, "ToPort": port,
                                "UserIdGroupPairs": [{
                                    "GroupId": source,
                                    "Description": f"Lambda to {what} (runbook {STEP_NAME})"}]}],
                TagSpecifications=[{"ResourceType": "security-group-rule",
                                    "Tags": naming.as_aws(naming.tags(self.config, STEP_NAME))}]))
        except Exception as exc:  # noqa: BLE001 - only a duplicate is "done already"
            if retry.error_code(exc) != "InvalidPermission.Duplicate":
                raise
            return False  # a concurrent run added it
        state.groups[target_id].ingress.append(Permission("tcp", port, port, frozenset({source})))
        self._added(state, target_id, answer, sgrules.Rule.tcp_from(port, source))
        return True

    def apply_authorize_egress(self, state: IntegrateState, role: str) -> bool:
        """Give the Lambda or the cluster's group back the all-traffic egress someone
        removed (or, on the cluster's, an earlier runbook that made it without)."""
        group = (self.owned_group(state, role) if role == "database"
                 else self._existing(state, role))
        try:
            answer = self.ctx.retry_ec2(lambda: self.client("ec2").authorize_security_group_egress(
                GroupId=group.id, IpPermissions=[sgrules.permission(sgrules.ALL_TRAFFIC_OUT)]))
        except Exception as exc:  # noqa: BLE001 - only a duplicate is "done already"
            if retry.error_code(exc) != "InvalidPermission.Duplicate":
                raise
            return False
        group.egress.append(ALL_TRAFFIC_OUT)
        self._added(state, group.id, answer, sgrules.ALL_TRAFFIC_OUT)
        return True

    def apply_revoke(self, state: IntegrateState, group_id: str, rule_id: str,
                     egress: bool) -> bool:
        """Remove one rule by its id. Already gone (removed by someone else, or by this
        request sent again after its answer was lost) is done."""
        ec2 = self.client("ec2")
        revoke = ec2.revoke_security_group_egress if egress else ec2.revoke_security_group_ingress
        done = True
        try:
            self.ctx.retry_ec2(lambda: revoke(GroupId=group_id, SecurityGroupRuleIds=[rule_id]))
        except Exception as exc:  # noqa: BLE001 - only "not there" is done already
            if retry.error_code(exc) not in sgrules.GONE:
                raise
            done = False
        state.rules.get(group_id, {}).pop(rule_id, None)
        return done

    @staticmethod
    def _added(state: IntegrateState, group_id: str, answer: dict, rule: sgrules.Rule) -> None:
        ids = [r["SecurityGroupRuleId"] for r in answer.get("SecurityGroupRules") or ()]
        state.rules.setdefault(group_id, {})[ids[0] if ids else "(new)"] = rule

    def apply_create_endpoint(self, state: IntegrateState, service: str, tags: dict) -> None:
        ec2, group = self.client("ec2"), self._existing(state, "endpoints").id
        # One token per planned create: a retried request (after a timeout, say) returns
        # the endpoint the first attempt made instead of making a second one.
        token = f"runbook-{uuid.uuid4().hex}"
        raw = self.ctx.retry_ec2(lambda: ec2.create_vpc_endpoint(
            VpcEndpointType="Interface", VpcId=state.vpc_id,
            ServiceName=self._service_name(service), SubnetIds=self._subnets_to_add(state, []),
            SecurityGroupIds=[group], PrivateDnsEnabled=True, ClientToken=token,
            PolicyDocument=json.dumps(self.endpoint_policy(service, state.account)),
            TagSpecifications=[{"ResourceType": "vpc-endpoint", "Tags": naming.as_aws(tags)}],
        ))["VpcEndpoint"]
        state.endpoints.append(parse_endpoint(raw, self.ctx.aws.region))

    def apply_modify_endpoint(self, state: IntegrateState, endpoint_id: str, private_dns: bool,
                              add_group: bool, add_subnets: list[str],
                              policy: bool = False) -> None:
        [endpoint] = [e for e in state.endpoints if e.id == endpoint_id]
        params: dict = {"VpcEndpointId": endpoint_id}
        if private_dns:
            params["PrivateDnsEnabled"] = True
        if add_group:
            params["AddSecurityGroupIds"] = [self._existing(state, "endpoints").id]
        if add_subnets:
            params["AddSubnetIds"] = add_subnets
        if policy:  # replaces the whole policy; the plan showed it
            params["PolicyDocument"] = json.dumps(self.endpoint_policy(endpoint.service, state.account))
        self.client("ec2").modify_vpc_endpoint(**params)
        endpoint.private_dns = endpoint.private_dns or private_dns
        endpoint.group_ids = endpoint.group_ids + params.get("AddSecurityGroupIds", [])
        endpoint.subnet_ids = endpoint.subnet_ids + add_subnets
        if policy:
            endpoint.policy = self.endpoint_policy(endpoint.service, state.account)

    def apply_tag(self, state: IntegrateState, resource_id: str, tags: dict) -> None:
        self.ctx.retry_ec2(lambda: self.client("ec2").create_tags(
            Resources=[resource_id], Tags=naming.as_aws(tags)))
        for item in [*state.groups.values(), *state.endpoints]:
            if item.id == resource_id:
                item.tags.update(tags)

    # -- settle: wait, describe again, check ------------------------------------------

    def settle(self, state: IntegrateState) -> None:
        """Wait for the endpoints, then prove from a fresh description that the plan took
        effect and that the preflight passes. Read calls only."""
        self._wait_for_endpoints(state)
        fresh, problems = state, {}

        def describe() -> dict:
            nonlocal fresh, problems
            fresh = self.read()
            problems = self.unsettled(fresh)
            return problems

        # Only our own writes can still be propagating; otherwise one look decides.
        timeout = PROPAGATION_TIMEOUT_S if self._wrote else 0
        try:
            retry.wait_until(describe, lambda found: not found,
                             what=f"the security groups and endpoints of {state.vpc_id}",
                             timeout_s=timeout, interval_s=PROPAGATION_INTERVAL_S,
                             sleep=self.ctx.sleep, clock=self.ctx.clock,
                             on_wait=self.ctx.progress.waiting)
        except retry.WaitTimeout:
            [(resource, lines)] = list(problems.items())[:1]
            text = lines[0] if len(lines) == 1 else "\n" + "\n".join(f"- {p}" for p in lines)
            raise StepFailed(STEP_NAME, resource, text) from None
        state.__dict__.update(fresh.__dict__)

    def unsettled(self, state: IntegrateState) -> dict[str, list[str]]:
        """{what failed: problems} for freshly described `state`; {} when all is well.

        The preflight comes first: a missing path is what the operator has to hear about.
        Then the plan, which must be empty once applied; moto, for one, accepts a
        ModifyVpcEndpoint that turns private DNS on and does not turn it on.
        """
        problems = preflight(self.described(state))
        if problems:
            return {"reachability preflight": problems}
        left = self.plan(state)
        if left:
            return {"convergence": ["still to do after apply (AWS accepted the change, but "
                                    "describing shows it has not taken effect): "
                                    + "; ".join(c.describe() for c in left)]}
        return {}

    def described(self, state: IntegrateState) -> Described:
        lam = self.group(state, "lambda")
        return Described(
            vpc_id=state.vpc_id, vpc_cidr=state.vpc_cidr,
            dns_support=bool(state.dns_support), dns_hostnames=bool(state.dns_hostnames),
            subnets=[state.subnets[s] for s in state.subnet_ids if s in state.subnets],
            lambda_group_id=lam.id if lam else naming.lambda_security_group_name(self.config),
            database_group_id=state.database_group_id, database_port=state.port,
            groups=state.groups, endpoints=state.endpoints)

    def _wait_for_endpoints(self, state: IntegrateState) -> None:
        ids = sorted(e.id for e in (self.endpoint(state, s) for s in SERVICES)
                     if e is not None and e.state.lower() != "available")
        if not ids:
            return
        ec2 = self.client("ec2")

        def states() -> dict[str, str]:
            found = self.ctx.retry_ec2(lambda: ec2.describe_vpc_endpoints(VpcEndpointIds=ids))
            return {e["VpcEndpointId"]: str(e.get("State", "")).lower()
                    for e in found["VpcEndpoints"]}

        def failed(current: dict[str, str]) -> str | None:
            gone = [f"{i} is {s}" for i, s in sorted(current.items()) if s in FINAL_STATES]
            return ", ".join(gone) or None

        what = f"vpc endpoints {', '.join(ids)} to be available"
        try:
            retry.wait_until(states, lambda now: all(s == "available" for s in now.values()),
                             what=what, timeout_s=ENDPOINT_TIMEOUT_S,
                             interval_s=ENDPOINT_INTERVAL_S, sleep=self.ctx.sleep,
                             clock=self.ctx.clock, failed=failed,
                             on_wait=self.ctx.progress.waiting)
        except retry.WaitTimeout as exc:
            raise StepFailed(STEP_NAME, "vpc endpoints", str(exc)) from None

    # -- outputs -----------------------------------------------------------------------

    def outputs(self, state: IntegrateState) -> IntegrateOutputs:
        lam, endpoints_group = self.group(state, "lambda"), self.group(state, "endpoints")
        found = {service: self.endpoint(state, service) for service in SERVICES}
        return IntegrateOutputs(
            lambda_security_group_id=lam.id if lam else UNKNOWN,
            endpoint_security_group_id=endpoints_group.id if endpoints_group else UNKNOWN,
            subnet_ids=tuple(state.subnet_ids),
            vpc_id=state.vpc_id,
            endpoints={service: e.id if e else UNKNOWN for service, e in found.items()})


STEP = VpcIntegrateStep
